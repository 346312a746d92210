package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// noPtrace runs a command as root without CAP_SYS_PTRACE, as containers
// often run: the kernel then refuses /proc/PID/ns/net and /proc/PID/fd of
// every process with capabilities it lacks (ptrace_may_access()), as a
// security module or hidepid refuses even full root.
var noPtrace = []string{"setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--"}

// pyListen listens until killed at cleanup (600 s: a loaded machine can
// make this test slow).
const pyListen = `import socket,sys,time
s=socket.socket()
s.bind(("0.0.0.0",int(sys.argv[1])))
s.listen(5)
print("ok",flush=True)
time.sleep(600)`

// startListener runs python listening on port under the prefix argv and
// returns its pid once it listens.
func startListener(t *testing.T, port int, prefix ...string) int {
	t.Helper()
	py := testutil.RequireTool(t, "/usr/bin/python3")
	argv := append(prefix, py, "-c", pyListen, strconv.Itoa(port))
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // by pid: started here
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("%v: %q %v", argv, line, err)
	}
	return cmd.Process.Pid
}

func runNoPtrace(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argv := append(append(append([]string{}, noPtrace...), binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// TestHiddenProcesses: processes backlog may not inspect are reported once,
// by pid, command and errno, with what they hide from what was asked and
// advice that fits the caller — and not at all when they hide nothing the
// filters ask for.
func TestHiddenProcesses(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	testutil.RequireTool(t, "unshare")
	ns := labtest.Namespace(t, "bl-hidden")
	seen, hiddenPort := 20000+rand.IntN(5000), 25000+rand.IntN(5000)
	// Owned by a process with no more capabilities than the caller: its
	// owner is shown.
	owner := startListener(t, seen, append([]string{"ip", "netns", "exec", ns.Name}, noPtrace...)...)
	// A namespace held only by a fully privileged process: refused.
	hidden := startListener(t, hiddenPort, "unshare", "--net", "--")

	out, stderr, code := runNoPtrace(t, "ls", "--netns", ns.Name)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("python3(%d)", owner)) {
		t.Fatalf("ls --netns %s: exit %d, want the owner python3(%d):\n%s%s", ns.Name, code, owner, out, stderr)
	}
	if stderr != "" {
		t.Errorf("ls --netns %s shows its only listener's owner, yet warns:\n%s", ns.Name, stderr)
	}

	_, stderr, _ = runNoPtrace(t, "ls", "--netns", "all", "--port", strconv.Itoa(hiddenPort))
	want := fmt.Sprintf("pid %d (python3)", hidden)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "EACCES") ||
		!strings.Contains(stderr, "with 1 listener") || !strings.Contains(stderr, "run as root") {
		t.Errorf("ls --netns all --port %d without CAP_SYS_PTRACE: want one line naming %s, EACCES, 1 listener and advice to run as root; got\n%s", hiddenPort, want, stderr)
	}
	_, stderr, _ = runNoPtrace(t, "ls", "--netns", "all", "--port", strconv.Itoa(seen))
	if strings.Contains(stderr, want) {
		t.Errorf("--port %d: the refused namespace holds no such listener, yet is reported:\n%s", seen, stderr)
	}
	out, stderr, _ = runIn(t, "", "ls", "--netns", "all", "--port", strconv.Itoa(hiddenPort))
	if strings.Contains(stderr, want) || !strings.Contains(out, fmt.Sprintf("python3(%d)", hidden)) {
		t.Errorf("as root: want the listener and its owner, no refusal:\n%s%s", out, stderr)
	}
}
