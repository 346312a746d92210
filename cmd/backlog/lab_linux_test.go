package main

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// labNamespaces lists the lab's namespaces that exist now, created by
// process pid, or when pid is 0 by any process that has exited (names are
// prefix-PID-N): a live process's are in use, by another test running
// beside this one on a shared host.
func labNamespaces(t *testing.T, pid int) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], scenario.Prefix+"-") {
			continue
		}
		parts := strings.Split(f[0], "-")
		creator, _ := strconv.Atoi(parts[len(parts)-2])
		if pid != 0 && creator != pid || pid == 0 && syscall.Kill(creator, 0) == nil {
			continue
		}
		names = append(names, f[0])
	}
	return names
}

func TestLabJSON(t *testing.T) {
	testutil.RequireRoot(t)
	out, stderr, code := runIn(t, "", "lab", "overflow", "--json", "--duration", "500ms", "--clients", "10", "--backlog", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res scenario.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Scenario != "overflow" || !res.OK() || res.Observed["peak_accept_queue"] != 4 || res.Moved["ListenOverflows"] == 0 {
		t.Errorf("result %+v", res)
	}
	if left := labNamespaces(t, 0); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestLabNeedsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	_, stderr, code := runIn(t, "", "--nobody", "lab", "nobind")
	if code != exitFailure || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "backlog: lab needs root") {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line saying it needs root", code, stderr)
	}
}

// TestLabInterrupted: Ctrl-C in the middle of a two-namespace scenario
// tears everything down.
func TestLabInterrupted(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command(binary, "lab", "synflood", "--duration", "30s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(labNamespaces(t, cmd.Process.Pid)) < 2 {
			return errString("the lab's two namespaces did not appear")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // let it start driving clients
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitFailure || !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("exit %v, stderr %q; want exit 1 saying it was interrupted", err, stderr.String())
	}
	if left := labNamespaces(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("left behind after Ctrl-C: %v", left)
	}
}

// TestLabAfterCrash: a run killed outright leaves its namespaces; the next
// run removes them and works.
func TestLabAfterCrash(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command(binary, "lab", "overflow", "--duration", "30s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(labNamespaces(t, cmd.Process.Pid)) == 0 {
			return errString("the lab's namespace did not appear")
		}
		return nil
	})
	cmd.Process.Kill()
	cmd.Wait()
	if len(labNamespaces(t, cmd.Process.Pid)) == 0 {
		t.Fatal("SIGKILL left nothing: the test proves nothing")
	}
	if _, stderr, code := runIn(t, "", "lab", "nobind"); code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if left := labNamespaces(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("stale namespaces not removed: %v", left)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestLabFlags: a flag a scenario does not apply is a usage error, not
// accepted and ignored; --backlog 0 is listen(fd, 0), not the default;
// --clients 0 is refused; --json reports only the parameters applied.
func TestLabFlags(t *testing.T) {
	testutil.RequireRoot(t)
	for _, args := range [][]string{
		{"lab", "overflow", "--syncookies", "0"}, {"lab", "overflow", "--somaxconn", "5"}, {"lab", "nobind", "--clients", "3"},
		{"lab", "overflow", "--clients", "0"}, {"lab", "abort", "--accept-rate", "1"},
	} {
		_, stderr, code := runIn(t, "", args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("backlog %v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
	out, stderr, code := runIn(t, "", "lab", "overflow", "--json", "--backlog", "0", "--clients", "5", "--duration", "1500ms")
	if code != 0 {
		t.Fatalf("--backlog 0: exit %d: %s\n%s", code, stderr, out)
	}
	var res struct {
		Params   map[string]any   `json:"params"`
		Observed map[string]int64 `json:"observed"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Params["backlog"] != 0.0 || res.Params["clients"] != 5.0 || res.Observed["peak_accept_queue"] != 1 {
		t.Errorf("--backlog 0: params %v, observed %v; want backlog 0 and an accept queue of 1 (backlog+1)", res.Params, res.Observed)
	}
	if _, ok := res.Params["syncookies"]; ok {
		t.Errorf("overflow reports syncookies, which it does not apply: %v", res.Params)
	}
	out, _, _ = runIn(t, "", "lab", "nobind", "--json")
	res.Params = nil
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Params) != 1 || res.Params["backlog"] != 16.0 {
		t.Errorf("nobind params %v (%v); want only the backlog it applied", res.Params, err)
	}
}

// TestLabAbortExplainsDrops: the listener's drops beside a different
// ListenDrops delta come with the reason, not as a contradiction.
func TestLabAbortExplainsDrops(t *testing.T) {
	testutil.RequireRoot(t)
	out, stderr, code := runIn(t, "", "lab", "abort")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	var drops, listenDrops int
	for _, line := range strings.Split(out, "\n") {
		if _, after, ok := strings.Cut(line, "  drops "); ok && strings.HasPrefix(strings.TrimSpace(line), "listener ") {
			drops, _ = strconv.Atoi(strings.Fields(after)[0])
		}
		if _, after, ok := strings.Cut(line, "ListenDrops +"); ok && strings.Contains(line, "TcpExt moved") {
			listenDrops, _ = strconv.Atoi(strings.TrimRight(strings.Fields(after)[0], ","))
		}
	}
	if drops == 0 || listenDrops == 0 {
		t.Fatalf("no drops %d or ListenDrops %d in\n%s", drops, listenDrops, out)
	}
	if explained := strings.Contains(out, "is not ListenDrops"); explained != (drops != listenDrops) {
		t.Errorf("drops %d, ListenDrops +%d, explained %v:\n%s", drops, listenDrops, explained, out)
	}
}
