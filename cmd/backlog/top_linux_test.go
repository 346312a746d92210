package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// startOverflow runs a lab overflow (backlog 5, 20 clients, never
// accepting) for the length of the test.
func startOverflow(t *testing.T) *scenario.Run {
	t.Helper()
	testutil.RequireRoot(t)
	run, err := scenario.Start(context.Background(), "overflow", scenario.Params{Backlog: 5, Clients: 20, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	return run
}

type tmux struct {
	t    *testing.T
	name string
}

func newTmux(t *testing.T, w, h int, command string) *tmux {
	t.Helper()
	testutil.RequireTool(t, "tmux")
	// Each session has its own tmux server (-L name): a server whose last
	// session ends exits, and a test starting a session just then, here
	// or beside this one, would meet "server exited unexpectedly".
	name := fmt.Sprintf("backlog-test-%d", time.Now().UnixNano())
	// The shell keeps the pane open after backlog exits, so the test can
	// read its exit code and the restored screen.
	script := command + "; echo EXITED $?; sleep 60"
	if out, err := exec.Command("tmux", "-L", name, "new-session", "-d", "-s", name, "-x", strconv.Itoa(w), "-y", strconv.Itoa(h), script).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	tm := &tmux{t, name}
	t.Cleanup(func() { exec.Command("tmux", "-L", name, "kill-server").Run() })
	return tm
}

func (tm *tmux) screen() string {
	out, err := exec.Command("tmux", "-L", tm.name, "capture-pane", "-p", "-t", tm.name).Output()
	if err != nil {
		tm.t.Fatalf("capture-pane: %v", err)
	}
	return string(out)
}

func (tm *tmux) keys(keys ...string) {
	if out, err := exec.Command("tmux", append([]string{"-L", tm.name, "send-keys", "-t", tm.name}, keys...)...).CombinedOutput(); err != nil {
		tm.t.Fatalf("send-keys: %v: %s", err, out)
	}
}

func (tm *tmux) format(f string) string {
	out, err := exec.Command("tmux", "-L", tm.name, "display-message", "-p", "-t", tm.name, f).Output()
	if err != nil {
		tm.t.Fatalf("display-message: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// waitScreen polls the screen until cond accepts it.
func (tm *tmux) waitScreen(what string, cond func(string) bool) string {
	tm.t.Helper()
	var s string
	testutil.Eventually(tm.t, 10*time.Second, func() error {
		s = tm.screen()
		if !cond(s) {
			return fmt.Errorf("screen never showed %s:\n%s", what, s)
		}
		return nil
	})
	return s
}

// dataRows returns the listener rows of the screen (after the column header).
func dataRows(screen string) []string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, "ADDRESS:PORT") {
			var rows []string
			for _, r := range lines[i+1:] {
				if strings.Contains(r, ":") && !strings.HasPrefix(r, "q quit") {
					rows = append(rows, r)
				}
			}
			return rows
		}
	}
	return nil
}

func TestTopInTmux(t *testing.T) {
	run := startOverflow(t)
	// Another listener in the same namespace that stays quiet, on a lower
	// port-independent position: the overflowing one must rise above it.
	quiet, err := run.Server.Listen(netipLoopback0(), 128)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	port := strconv.Itoa(int(run.Listener.Port))

	tm := newTmux(t, 160, 30, binary+" top --netns "+run.Server.Name)
	screen := tm.waitScreen("the overflowing listener on top with peak 6 and drops", func(s string) bool {
		rows := dataRows(s)
		if len(rows) < 2 || !strings.Contains(rows[0], "127.0.0.1:"+port) {
			return false
		}
		f := strings.Fields(rows[0])
		// NETNS ADDRESS ACC-Q PEAK BACKLOG [bar] PCT SYN-Q DROP/s ...
		return len(f) > 8 && f[2] == "6" && f[3] == "6" && f[4] == "5" && f[8] != "-" && f[8] != "0.0"
	})
	if tm.format("#{alternate_on}") != "1" {
		t.Errorf("top is not on the alternate screen")
	}
	if !strings.Contains(screen, "ListenOverflows/s") || !strings.Contains(screen, "somaxconn 4096") {
		t.Errorf("header lacks rates or caps:\n%s", screen)
	}

	// Sort by port: the quiet listener's port decides the order now.
	tm.keys("o")
	want := run.Listener.Port < quiet.Port
	tm.waitScreen("sort by port", func(s string) bool {
		rows := dataRows(s)
		return strings.Contains(s, "sort: port") && len(rows) == 2 &&
			strings.Contains(rows[0], "127.0.0.1:"+port) == want
	})
	// Filter by typing the quiet port: one row left.
	tm.keys("/")
	tm.keys(strconv.Itoa(int(quiet.Port)))
	tm.keys("Enter")
	tm.waitScreen("the filtered row", func(s string) bool {
		rows := dataRows(s)
		return len(rows) == 1 && strings.Contains(rows[0], strconv.Itoa(int(quiet.Port)))
	})
	tm.keys("q")
	tm.waitScreen("exit 0", func(s string) bool { return strings.Contains(s, "EXITED 0") })
	if tm.format("#{alternate_on}") != "0" {
		t.Errorf("the terminal was not restored: still on the alternate screen")
	}
}

func TestTopResizeAndCtrlC(t *testing.T) {
	run := startOverflow(t)
	tm := newTmux(t, 160, 30, binary+" top --netns "+run.Server.Name)
	tm.waitScreen("the listener", func(s string) bool { return strings.Contains(s, "NETNS") && len(dataRows(s)) == 1 })
	exec.Command("tmux", "-L", tm.name, "resize-window", "-t", tm.name, "-x", "70", "-y", "12").Run()
	tm.waitScreen("a narrow layout without the NETNS column", func(s string) bool {
		return !strings.Contains(s, "NETNS") && strings.Contains(s, "ADDRESS:PORT") && len(dataRows(s)) == 1
	})
	exec.Command("tmux", "-L", tm.name, "resize-window", "-t", tm.name, "-x", "30", "-y", "5").Run()
	tm.waitScreen("the too-small message", func(s string) bool { return strings.Contains(s, "too small") })
	exec.Command("tmux", "-L", tm.name, "resize-window", "-t", tm.name, "-x", "120", "-y", "20").Run()
	tm.keys("C-c")
	tm.waitScreen("exit 0 after Ctrl-C", func(s string) bool { return strings.Contains(s, "EXITED 0") })
	if tm.format("#{alternate_on}") != "0" {
		t.Errorf("Ctrl-C left the terminal on the alternate screen")
	}
}

// TestTopJSONStream: not a terminal, so one complete JSON object a line,
// one per refresh, and --count stops it. What each frame says is checked
// against the frames themselves, never against the clock: the interval
// is the time between two frames, the rates are what moved over it.
func TestTopJSONStream(t *testing.T) {
	run := startOverflow(t)
	out, stderr, code := runIn(t, "", "top", "--netns", run.Server.Name, "--interval", "300ms", "--count", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasSuffix(out, "}\n") {
		t.Errorf("the stream does not end with a complete object: %q", out)
	}
	var deltas []snapshot.Delta
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var d snapshot.Delta
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&d); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %s", i+1, err, line)
		}
		deltas = append(deltas, d)
	}
	if len(deltas) != 3 {
		t.Fatalf("%d objects, want 3 (--count 3)", len(deltas))
	}
	for i, d := range deltas {
		if len(d.Listeners) != 1 || len(d.Namespaces) != 1 {
			t.Fatalf("frame %d: %d listeners in %d namespaces, want the overflowing one", i+1, len(d.Listeners), len(d.Namespaces))
		}
		l, ns := d.Listeners[0], d.Namespaces[0]
		// The server never accepts: the queue stays at backlog+1.
		if l.Port != run.Listener.Port || l.Backlog != 5 || l.AcceptQueue != 6 || l.AcceptQueuePeak != 6 || ns.Name != run.Server.Name {
			t.Errorf("frame %d: listener %s:%d queue %d peak %d of %d in %s, want :%d 6 peak 6 of 5 in %s",
				i+1, l.Address, l.Port, l.AcceptQueue, l.AcceptQueuePeak, l.Backlog, ns.Name, run.Listener.Port, run.Server.Name)
		}
		if i == 0 {
			// Nothing to compare the first frame with: no interval, no rates.
			if d.Interval != 0 || ns.Rates != nil || l.DropsPerSecond != nil {
				t.Errorf("frame 1: interval %v, rates %v, drops/s %v; want none", d.Interval, ns.Rates, l.DropsPerSecond)
			}
			continue
		}
		prev := deltas[i-1]
		secs := d.TakenAt.Sub(prev.TakenAt).Seconds()
		if secs <= 0 || math.Abs(d.Interval-secs) > 1e-6 {
			t.Errorf("frame %d: interval %v, taken %v after the frame before", i+1, d.Interval, secs)
		}
		pl, pns := prev.Listeners[0], prev.Namespaces[0]
		if l.Drops == nil || pl.Drops == nil || l.DropsPerSecond == nil ||
			math.Abs(*l.DropsPerSecond-float64(*l.Drops-*pl.Drops)/secs) > 1e-6 {
			t.Errorf("frame %d: drops/s %v, drops %v after %v", i+1, l.DropsPerSecond, l.Drops, pl.Drops)
		}
		moved := ns.Counters.Delta(pns.Counters)
		if rate, ok := ns.Rates["ListenOverflows"]; !ok || math.Abs(rate-float64(moved["ListenOverflows"])/secs) > 1e-6 {
			t.Errorf("frame %d: ListenOverflows/s %v, moved %d in %v s", i+1, ns.Rates["ListenOverflows"], moved["ListenOverflows"], secs)
		}
	}
}

func netipLoopback0() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:0") }

// TestNoArguments: `backlog` alone is top on a terminal, ls otherwise.
func TestNoArguments(t *testing.T) {
	out, _, code := runIn(t, "")
	if code != 0 || !strings.Contains(out, "ADDRESS:PORT") || !strings.Contains(out, "DROPS is the listener's sk_drops") {
		t.Errorf("not a terminal: exit %d, want the ls table:\n%s", code, out)
	}
	tm := newTmux(t, 120, 20, binary)
	tm.waitScreen("the live view", func(s string) bool { return strings.Contains(s, "backlog top") })
	tm.keys("q")
	tm.waitScreen("exit 0", func(s string) bool { return strings.Contains(s, "EXITED 0") })
}

// TestTopScrollsThousands: 1,500 listeners scroll a page at a time, and
// typing a port finds one among them.
func TestTopScrollsThousands(t *testing.T) {
	ns := labtest.Namespace(t, "bl-top-many")
	var last *lab.Listener
	for range 1500 {
		last = labtest.Listen(t, ns, "127.0.0.1:0", 16)
	}
	tm := newTmux(t, 120, 20, binary+" top --netns "+ns.Name+" --interval 500ms")
	first := tm.waitScreen("1,500 listeners", func(s string) bool {
		return strings.Contains(s, "1500/1500 listeners") && len(dataRows(s)) == 20-5
	})
	tm.keys("G") // to the last row
	tm.waitScreen("the last page", func(s string) bool {
		rows := dataRows(s)
		return len(rows) == 15 && rows[0] != dataRows(first)[0]
	})
	tm.keys("/")
	tm.keys(strconv.Itoa(int(last.Port)))
	tm.keys("Enter")
	tm.waitScreen("one row for the typed port", func(s string) bool {
		rows := dataRows(s)
		return len(rows) == 1 && strings.Contains(rows[0], ":"+strconv.Itoa(int(last.Port))) && strings.Contains(s, "1/1500 listeners")
	})
	tm.keys("q")
	tm.waitScreen("exit 0", func(s string) bool { return strings.Contains(s, "EXITED 0") })
}

// TestTopNamespacesComeAndGo: a namespace made while top runs appears, one
// removed disappears, and top goes on.
func TestTopNamespacesComeAndGo(t *testing.T) {
	gone := labtest.Namespace(t, "bl-top-gone")
	cmd := exec.Command(binary, "top", "--json", "--interval", "300ms", "--count", "8")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 4<<20)
	names := func(line []byte) map[string]bool {
		var d snapshot.Delta
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		m := map[string]bool{}
		for _, ns := range d.Namespaces {
			m[ns.Name] = true
		}
		return m
	}
	if !sc.Scan() || !names(sc.Bytes())[gone.Name] {
		t.Fatalf("first frame lacks %s", gone.Name)
	}
	came := labtest.Namespace(t, "bl-top-came")
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	var last map[string]bool
	frames := 1
	for sc.Scan() {
		last = names(sc.Bytes())
		frames++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("top: %v", err)
	}
	if frames != 8 || !last[came.Name] || last[gone.Name] {
		t.Errorf("%d frames; last has %s: %v, %s: %v", frames, came.Name, last[came.Name], gone.Name, last[gone.Name])
	}
}

// TestTopNamespaceVanishes: the one namespace top --json watches is
// deleted once top has shown it: one line that says so (no doubled
// prefix, not a usage error), then exit 1, instead of the same line every
// interval forever.
func TestTopNamespaceVanishes(t *testing.T) {
	ns := labtest.Namespace(t, "bl-top-vanish")
	cmd := exec.Command(binary, "top", "--json", "--netns", ns.Name, "--interval", "200ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // by pid; no-op once it exited
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 4<<20)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "{") {
		t.Fatalf("no frame before the namespace went away: %q, stderr %q", sc.Text(), stderr.String())
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for sc.Scan() { // the frames of the intervals before it noticed
		}
		done <- cmd.Wait()
	}()
	var code int
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	case <-time.After(time.Minute): // a hang guard, not a timing bound
		cmd.Process.Kill()
		t.Fatalf("still running a minute after its namespace went away:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if code != exitFailure || len(lines) != 1 || strings.Contains(stderr.String(), "backlog: backlog:") || strings.Contains(stderr.String(), "bad --netns") ||
		!strings.Contains(stderr.String(), "went away") || !strings.Contains(stderr.String(), ns.Name) {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line saying %s went away", code, stderr.String(), ns.Name)
	}
}

// TestTopSaysWhatItCannotSee: as nobody, top --json says on stderr, once,
// that it shows its own namespace only; the live view says so too, and
// names the namespace instead of claiming "all namespaces".
func TestTopSaysWhatItCannotSee(t *testing.T) {
	testutil.RequireTool(t, "setpriv")
	ns := labtest.Namespace(t, "bl-top-nobody")
	labtest.Listen(t, ns, "127.0.0.1:0", 5)
	_, stderr, code := runIn(t, ns.Name, "--nobody", "top", "--json", "--interval", "200ms", "--count", "3")
	if code != 0 || strings.Count(stderr, "CAP_SYS_ADMIN") != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("--json as nobody: exit %d, stderr %q; want one line, once, saying why only this namespace", code, stderr)
	}
	tm := newTmux(t, 160, 12, "ip netns exec "+ns.Name+" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- "+binary+" top --interval 300ms")
	s := tm.waitScreen("the note", func(s string) bool { return strings.Contains(s, "CAP_SYS_ADMIN") })
	if strings.Contains(s, "all namespaces") || !strings.Contains(s, "namespace "+ns.Name) {
		t.Errorf("the view claims more than it shows:\n%s", s)
	}
	tm.keys("q")
	tm.waitScreen("exit 0", func(s string) bool { return strings.Contains(s, "EXITED 0") })
}

// TestTopNarrowKeepsNetns: at 80 columns, listeners of two namespaces on
// the same address still say which namespace they are in; the bar and the
// history go first.
func TestTopNarrowKeepsNetns(t *testing.T) {
	a, b := labtest.Namespace(t, "bl-top-a"), labtest.Namespace(t, "bl-top-b")
	la := labtest.Listen(t, a, "127.0.0.1:0", 5)
	labtest.Listen(t, b, "127.0.0.1:"+strconv.Itoa(int(la.Port)), 5)
	tm := newTmux(t, 80, 12, binary+" top --netns "+a.Name+" --netns "+b.Name+" --interval 300ms")
	s := tm.waitScreen("two rows", func(s string) bool { return len(dataRows(s)) == 2 })
	if !strings.Contains(s, "NETNS") || strings.Contains(s, "HISTORY") || strings.Contains(s, "FILL") {
		t.Errorf("at 80 columns: want NETNS, no FILL, no HISTORY:\n%s", s)
	}
	rows := dataRows(s)
	if !strings.HasPrefix(rows[0], "bl-top-") || !strings.HasPrefix(rows[1], "bl-top-") || rows[0][:14] == rows[1][:14] {
		t.Errorf("rows do not tell their namespaces apart:\n%s", strings.Join(rows, "\n"))
	}
	tm.keys("q")
	tm.waitScreen("exit 0", func(s string) bool { return strings.Contains(s, "EXITED 0") })
}
