package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	if a := os.Getenv(goServerEnv); a != "" {
		goServerMain(strings.Split(a, ","))
	}
	// The kernel matrix's guests have no Go toolchain: scripts/kernels.sh
	// builds the binary and names it here.
	if b := os.Getenv("BACKLOG_TEST_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "backlog-bin")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // the unprivileged test runs it as nobody
	binary = filepath.Join(dir, "backlog")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runIn runs the real binary inside a namespace (or here when ns is "").
func runIn(t *testing.T, ns string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argv := append([]string{binary}, args...)
	if len(args) > 0 && args[0] == "--nobody" {
		argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--", binary}, args[1:]...)
	}
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nope"}, {"ls", "--port", "0"}, {"ls", "--port", "x"}, {"ls", "extra"}, {"ls", "--bogus"}, {"ls", "--pid", "-3"},
		// A --netns or --netns-dir that names nothing is never read as
		// "all" nor accepted silently, and every kind is a usage error.
		{"ls", "--netns", ""}, {"ls", "--netns", "/etc/passwd"}, {"ls", "--netns", "/nonexistent"},
		{"ls", "--netns", "/proc/self/ns/mnt"}, {"ls", "--netns", "pid:999999999"}, {"ls", "--netns-dir", "/nonexistent"},
		{"doctor", "--netns", ""}, {"top", "--netns", "/etc/passwd"}} {
		_, stderr, code := runIn(t, "", args...)
		if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("backlog %v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
	if out, _, code := runIn(t, "", "ls", "-h"); code != 0 || !strings.Contains(out, "-port") {
		t.Errorf("ls -h: exit %d, %q", code, out)
	}
}

// TestLsInNamespace drives the real binary in a namespace the test made:
// backlog 5, 20 clients, never accepted.
func TestLsInNamespace(t *testing.T) {
	ns := labtest.Namespace(t, "bl-cli")
	l := labtest.Listen(t, ns, "127.0.0.1:0", 5)
	labtest.Dial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), 20)
	port := strconv.Itoa(int(l.Port))

	var snap snapshot.Snapshot
	testutil.Eventually(t, 5*time.Second, func() error {
		out, stderr, code := runIn(t, "", "ls", "--json", "--netns", ns.Name, "--port", port)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		snap = snapshot.Snapshot{}
		if err := json.Unmarshal([]byte(out), &snap); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, out)
		}
		if len(snap.Listeners) != 1 || snap.Listeners[0].AcceptQueue != 6 {
			return fmt.Errorf("listeners %+v, want one with accept_queue 6", snap.Listeners)
		}
		return nil
	})
	got := snap.Listeners[0]
	if got.Backlog != 5 || got.Drops == nil || *got.Drops == 0 || got.Processes == nil || got.Processes[0].PID != os.Getpid() {
		t.Errorf("listener %+v", got)
	}
	if len(snap.Namespaces) != 1 || snap.Namespaces[0].Inode != got.Netns || snap.Namespaces[0].Counters.ListenOverflows == nil {
		t.Errorf("namespaces %+v", snap.Namespaces)
	}
	// The raw JSON keeps the contract's key names.
	out, _, _ := runIn(t, "", "ls", "--json", "--netns", ns.Name, "--port", port)
	for _, key := range []string{`"taken_at"`, `"accept_queue":6`, `"backlog":5`, `"syn_queue":0`, `"ListenOverflows"`, `"somaxconn"`, `"processes":[`} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s:\n%s", key, out)
		}
	}

	// Run inside the namespace: --netns self reads it without setns.
	table, _, code := runIn(t, ns.Name, "ls", "--netns", "self", "--port", port)
	if code != 0 {
		t.Fatalf("ls exit %d", code)
	}
	row := "127.0.0.1:" + port
	var line string
	for _, ln := range strings.Split(table, "\n") {
		if strings.Contains(ln, row) {
			line = ln
		}
	}
	f := strings.Fields(line)
	if len(f) != 6 || f[1] != "6/5" || f[2] != "120%" || f[3] != "0" || f[4] == "0" {
		t.Errorf("table row %q, want 6/5 120%% 0 and drops > 0\n%s", line, table)
	}
	if !strings.Contains(table, "ListenOverflows=") || !strings.Contains(table, "somaxconn=") || !strings.Contains(table, "not refused clients") {
		t.Errorf("table lacks counters, sysctls or the DROPS help:\n%s", table)
	}
}

// TestUnprivileged runs the real binary as nobody inside a namespace the
// test made: its own namespace only, the listener still shown, one line
// about what is missing, exit 0.
func TestUnprivileged(t *testing.T) {
	testutil.RequireTool(t, "setpriv")
	ns := labtest.Namespace(t, "bl-nobody")
	l := labtest.Listen(t, ns, "127.0.0.1:0", 5)

	stdout, stderr, code := runIn(t, ns.Name, "--nobody", "ls")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(stderr, "CAP_SYS_ADMIN") || !strings.Contains(stderr, "this namespace only") {
		t.Errorf("stderr %q: want one line saying other namespaces need CAP_SYS_ADMIN", stderr)
	}
	row := "127.0.0.1:" + strconv.Itoa(int(l.Port))
	if !strings.Contains(stdout, row) || !strings.Contains(stdout, "0/5") {
		t.Errorf("listener %s missing from\n%s", row, stdout)
	}
	if strings.Count(stdout, "(netns ") != 1 {
		t.Errorf("want exactly one namespace:\n%s", stdout)
	}
	// Asking for all of them explicitly is an error, not a silent narrowing.
	if _, stderr, code := runIn(t, ns.Name, "--nobody", "ls", "--netns", "all"); code != exitFailure || !strings.Contains(stderr, "CAP_SYS_ADMIN") {
		t.Errorf("--netns all as nobody: exit %d, %q", code, stderr)
	}
}

// TestVanishedNamespaceCLI: asking for a namespace that does not exist is a
// usage error with one line.
func TestMissingNamespaceCLI(t *testing.T) {
	testutil.RequireRoot(t)
	_, stderr, code := runIn(t, "", "ls", "--netns", "no-such-ns-"+strconv.Itoa(os.Getpid()))
	if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "no namespace of that name") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestInsideNamespace: `ip netns exec NS backlog` as root shows NS alone,
// as ss does, named as everywhere else, and says so in one line;
// --netns all still shows every namespace.
func TestInsideNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	ns := labtest.Namespace(t, "bl-inside")
	l := labtest.Listen(t, ns, "127.0.0.1:0", 5)
	stdout, stderr, code := runIn(t, ns.Name, "ls")
	if code != 0 || strings.Count(stdout, "(netns ") != 1 || !strings.HasPrefix(stdout, ns.Name+" (netns ") ||
		!strings.Contains(stdout, "127.0.0.1:"+strconv.Itoa(int(l.Port))) {
		t.Errorf("inside %s: exit %d, want that namespace alone, by its name:\n%s%s", ns.Name, code, stdout, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(stderr, ns.Name) || !strings.Contains(stderr, "--netns all") {
		t.Errorf("stderr %q: want one line naming %s and --netns all", stderr, ns.Name)
	}
	stdout, stderr, code = runIn(t, ns.Name, "ls", "--netns", "all")
	if code != 0 || !strings.Contains(stdout, "host (netns ") || !strings.Contains(stdout, ns.Name+" (netns ") || strings.Contains(stderr, "not the host's") {
		t.Errorf("inside, --netns all: exit %d, want every namespace and no note:\n%s%s", code, stdout, stderr)
	}
	// The same namespace, reached three ways, has one name.
	for _, spec := range []string{ns.Name, ns.Path, "self"} {
		stdout, _, _ := runIn(t, ns.Name, "ls", "--netns", spec)
		if !strings.HasPrefix(stdout, ns.Name+" (netns ") {
			t.Errorf("--netns %s from inside: named\n%s", spec, stdout)
		}
	}
}

// TestLsFilters: with a filter, ls prints only the namespaces holding a
// listener that matched (not every namespace as "(no listeners)"), one
// line when none did, and says when --pid or --process names no process.
func TestLsFilters(t *testing.T) {
	testutil.RequireRoot(t)
	ns := labtest.Namespace(t, "bl-filter")
	labtest.Namespace(t, "bl-filter-empty") // matches nothing
	l := labtest.Listen(t, ns, "127.0.0.1:0", 5)
	out, _, code := runIn(t, "", "ls", "--netns", "all", "--port", strconv.Itoa(int(l.Port)))
	if code != 0 || strings.Count(out, "(netns ") != 1 || !strings.HasPrefix(out, ns.Name+" (netns ") || strings.Contains(out, "(no listeners)") {
		t.Errorf("--port %d: exit %d, want the one namespace that holds it:\n%s", l.Port, code, out)
	}
	out, _, code = runIn(t, "", "ls", "--netns", "all", "--port", "1")
	if code != 0 || strings.Contains(out, "(netns ") || !strings.HasPrefix(out, "no listener matches the filters") {
		t.Errorf("--port 1: exit %d, want one line saying nothing matched:\n%s", code, out)
	}
	_, stderr, code := runIn(t, "", "ls", "--netns", ns.Name, "--pid", "999999999")
	if code != 0 || !strings.Contains(stderr, "--pid 999999999: no such process") {
		t.Errorf("--pid 999999999: exit %d, stderr %q; want a line saying there is no such process", code, stderr)
	}
	_, stderr, _ = runIn(t, "", "ls", "--netns", ns.Name, "--process", "no-such-comm")
	if !strings.Contains(stderr, "--process no-such-comm: no running process") {
		t.Errorf("--process no-such-comm: stderr %q", stderr)
	}
}

// TestNameWithoutPrivilege: the caller's namespace has the name root gives
// it (init's is "host", not "self"), whoever asks.
func TestNameWithoutPrivilege(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	name := func(args ...string) string {
		t.Helper()
		out, stderr, code := runIn(t, "", args...)
		var snap snapshot.Snapshot
		if err := json.Unmarshal([]byte(out), &snap); err != nil || code != 0 || len(snap.Namespaces) != 1 {
			t.Fatalf("%v: exit %d, %v: %s\n%s", args, code, err, stderr, out)
		}
		return snap.Namespaces[0].Name
	}
	root := name("ls", "--json", "--netns", "self", "--port", "1")
	if nobody := name("--nobody", "ls", "--json", "--port", "1"); nobody != root {
		t.Errorf("nobody names this namespace %q, root %q", nobody, root)
	}
}
