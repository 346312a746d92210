//go:build amd64

package trace

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// recorder runs a tracer and keeps every event it reads.
type recorder struct {
	*Tracer
	mu     sync.Mutex
	events []Event
	stop   func()
}

// drain waits until the reader has taken every event already in the ring
// buffer and handed it over: the ring is empty and no event arrived for
// 100 ms, for at most 10 s. A fixed pause was not enough on a loaded
// machine, where the reader fell more than 300 ms behind (an event
// counted by the kernel was then missing from the window).
func (r *recorder) drain() {
	count := func() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.events) }
	deadline := time.Now().Add(10 * time.Second)
	for n := count(); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := count()
		if r.reader.AvailableBytes() == 0 && m == n {
			return
		}
		n = m
	}
}

func startTracer(t *testing.T, opts Options) *recorder {
	t.Helper()
	testutil.RequireRoot(t)
	tr, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// On the kernels this project tests on, every hook loads.
	if w := tr.Warnings(); len(w) > 0 {
		t.Errorf("warnings: %v", w)
	}
	r := &recorder{Tracer: tr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, func(e Event) {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		})
	}()
	r.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if c, err := tr.Counters(); err != nil || c.Lost > 0 || c.Unmatched > 0 {
			t.Errorf("counters %v, %v", c, err)
		}
		tr.Close()
	})
	t.Cleanup(r.stop)
	return r
}

// window returns the events of namespace ino recorded in [from, to] on
// CLOCK_MONOTONIC, after giving the reader time to drain the ring buffer.
func (r *recorder) window(ino uint64, from, to time.Duration) []Event {
	r.drain()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Netns == ino && e.Monotonic >= from && e.Monotonic <= to {
			out = append(out, e)
		}
	}
	return out
}

func byStage(evs []Event) map[Stage]int64 {
	m := map[Stage]int64{}
	for _, e := range evs {
		m[e.Stage]++
	}
	return m
}

// scenarioRun runs a lab scenario while the tracer records. It returns the
// scenario's result, the TcpExt counters of its server namespace read after
// the run, the events of that namespace up to that read, and the clients'
// local ports.
//
// A new namespace starts with its counters at zero, so the counters read
// are what the run moved; reading them ourselves (rather than using
// Result.Moved) lets the events be cut at the same instant: SYNs the
// clients retransmit after the scenario's last read must not count.
func scenarioRun(t *testing.T, rec *recorder, name string, p scenario.Params) (*scenario.Result, map[string]int64, []Event, *scenario.Run, []uint16) {
	t.Helper()
	from := Monotonic()
	run, err := scenario.Start(context.Background(), name, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	id, err := netns.Stat(run.Server.Path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	for _, c := range run.Clients {
		ports = append(ports, c.LocalPorts()...)
	}
	counters, evs := readQuiet(t, rec, run, id.Inode, from)
	for k, v := range res.Moved {
		if counters[k] < v {
			t.Errorf("%s: %s read %d after the run, the scenario saw it move %d", name, k, counters[k], v)
		}
	}
	t.Logf("%s: events %v; counters %v", name, byStage(evs), counters)
	return res, counters, evs, run, ports
}

// readQuiet reads the namespace's counters at an instant no event falls
// near: an event stamped before the read was counted before it (the kernel
// bumps the counter, then frees the packet, then the program stamps it).
func readQuiet(t *testing.T, rec *recorder, run *scenario.Run, ino uint64, from time.Duration) (map[string]int64, []Event) {
	t.Helper()
	for range 10 {
		before := Monotonic()
		s, err := collect.Collect(context.Background(), collect.Options{Targets: []collect.Target{run.Target()}, NoOwners: true})
		after := Monotonic()
		if err != nil {
			t.Fatal(err)
		}
		if e := s.Namespaces[0].Error; e != "" {
			t.Fatal(e)
		}
		if len(rec.window(ino, before, after)) > 0 {
			continue // an event during the read: try again
		}
		counters := map[string]int64{}
		for _, nv := range s.Namespaces[0].Counters.Named() {
			counters[nv.Name] = nv.Value
		}
		return counters, rec.window(ino, from, before)
	}
	t.Fatal("no quiet moment to read the counters in 10 tries")
	return nil, nil
}

// checkEvents: every event names the run's listener, a peer among its
// clients, and this process as the owner.
func checkEvents(t *testing.T, evs []Event, run *scenario.Run, peer netip.Addr, ports []uint16) {
	t.Helper()
	for _, e := range evs {
		if e.Listener.Port() != run.Listener.Port {
			t.Errorf("%v: listener %v, want port %d", e.Stage, e.Listener, run.Listener.Port)
		}
		if e.Peer.Addr() != peer || !slices.Contains(ports, e.Peer.Port()) {
			t.Errorf("%v: peer %v is not one of the clients (%v, ports %v)", e.Stage, e.Peer, peer, ports)
		}
		if len(e.Processes) != 1 || e.Processes[0].PID != os.Getpid() {
			t.Errorf("%v: owner %v, want this process (%d)", e.Stage, e.Processes, os.Getpid())
		}
		if e.Backlog != uint32(run.Params.Backlog) {
			t.Errorf("%v: backlog %d, want %d", e.Stage, e.Backlog, run.Params.Backlog)
		}
	}
}

// TestOverflowEventsMatchCounters: a server that never accepts, then one
// that accepts 20 a second. The second also sends SYN cookies (its SYN
// queue fills in bursts) and drops cookie ACKs into its full accept queue.
func TestOverflowEventsMatchCounters(t *testing.T) {
	rec := startTracer(t, Options{})
	for _, p := range []scenario.Params{
		{Backlog: 5, Clients: 20, Duration: 1600 * time.Millisecond},
		{Backlog: 5, Clients: 30, AcceptRate: 20, Duration: 2 * time.Second},
	} {
		_, moved, evs, run, ports := scenarioRun(t, rec, "overflow", p)
		n := byStage(evs)
		if got, want := n[StageSyn]+n[StageAck], moved["ListenOverflows"]; got != want || want == 0 {
			t.Errorf("accept rate %v: syn+ack events %d, ListenOverflows moved %d", p.AcceptRate, got, want)
		}
		if got, want := n[StageCookie], moved["SyncookiesSent"]; got != want {
			t.Errorf("accept rate %v: cookie events %d, SyncookiesSent moved %d", p.AcceptRate, got, want)
		}
		if got, want := n[StageSyn]+n[StageAck]+n[StageSynQueue]+n[StageSynBacklog], moved["ListenDrops"]; got != want {
			t.Errorf("accept rate %v: drop events %d, ListenDrops moved %d", p.AcceptRate, got, want)
		}
		checkEvents(t, evs, run, netip.MustParseAddr("127.0.0.1"), ports)
		for _, e := range evs {
			if e.Stage == StageSyn && e.AcceptQueue != e.Backlog+1 {
				t.Errorf("syn drop with accept queue %d/%d, want full (backlog+1)", e.AcceptQueue, e.Backlog)
			}
		}
		run.Close()
	}
}

// TestAckOverflowEvents: handshakes completing into a full accept queue,
// dropped silently (tcp_abort_on_overflow=0) or reset (1).
func TestAckOverflowEvents(t *testing.T) {
	rec := startTracer(t, Options{})
	for _, abort := range []int{0, 1} {
		var p scenario.Params
		p.SetAbort(abort)
		_, moved, evs, run, ports := scenarioRun(t, rec, "abort", p)
		n := byStage(evs)
		if n[StageAck] == 0 {
			t.Errorf("abort_on_overflow=%d: no ack events: %v", abort, n)
		}
		if got, want := n[StageSyn]+n[StageAck], moved["ListenOverflows"]; got != want {
			t.Errorf("abort_on_overflow=%d: syn+ack events %d, ListenOverflows moved %d", abort, got, want)
		}
		checkEvents(t, evs, run, netip.MustParseAddr("192.0.2.2"), ports)
		run.Close()
	}
}

func TestSynfloodEventsMatchCounters(t *testing.T) {
	rec := startTracer(t, Options{})
	for _, p := range []scenario.Params{
		{Syncookies: 0},
		{Syncookies: 1},
		{Syncookies: 2},
		{Syncookies: 0, Backlog: 4096, Clients: 200, MaxSynBacklog: 128},
	} {
		p.Duration = 1200 * time.Millisecond
		_, moved, evs, run, ports := scenarioRun(t, rec, "synflood", p)
		n := byStage(evs)
		if got, want := n[StageSynQueue], moved["TCPReqQFullDrop"]; got != want {
			t.Errorf("syncookies=%d: syn-queue events %d, TCPReqQFullDrop moved %d", p.Syncookies, got, want)
		}
		if got, want := n[StageCookie], moved["SyncookiesSent"]; got != want {
			t.Errorf("syncookies=%d: cookie events %d, SyncookiesSent moved %d", p.Syncookies, got, want)
		}
		// Every drop counts in ListenDrops; the 3/4 rule only there.
		if got, want := n[StageSyn]+n[StageSynQueue]+n[StageSynBacklog], moved["ListenDrops"]; got != want {
			t.Errorf("syncookies=%d: drop events %d, ListenDrops moved %d", p.Syncookies, got, want)
		}
		if p.MaxSynBacklog > 0 && n[StageSynBacklog] == 0 {
			t.Errorf("tcp_max_syn_backlog=%d: no syn-backlog events", p.MaxSynBacklog)
		}
		if p.Syncookies > 0 && n[StageCookie] == 0 {
			t.Errorf("syncookies=%d: no cookie events", p.Syncookies)
		}
		checkEvents(t, evs, run, netip.MustParseAddr("192.0.2.2"), ports)
		run.Close()
	}
}

// TestAcceptWait: a server that accepts one connection every 10 ms. The
// tracer's median wait falls in the slot of the waits the server measured
// itself, or next to it; also when the clients' data reached the queued
// children 100 ms after their handshakes (the wait counts from the
// handshake, not from the child's last packet).
func TestAcceptWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		data bool
	}{{"handshake", false}, {"data-before-accept", true}} {
		t.Run(tc.name, func(t *testing.T) { testAcceptWait(t, tc.data) })
	}
}

func testAcceptWait(t *testing.T, data bool) {
	testutil.RequireRoot(t)
	ns, err := lab.NewNamespace("btrace")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	l, err := ns.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The port filter keeps this test's own loopback traffic out.
	rec := startTracer(t, Options{Ports: []uint16{l.Port}, Namespaces: []Namespace{{Path: ns.Path}}})

	const n = 40
	completed := map[uint16]time.Time{} // client port → handshake done
	var clients []*lab.Clients
	for range n {
		c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 1)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// On loopback the handshake completes within connect(2).
		completed[c.LocalPorts()[0]] = time.Now()
		clients = append(clients, c)
	}
	if data {
		time.Sleep(100 * time.Millisecond)
		for _, c := range clients {
			if c.Send([]byte("GET / HTTP/1.0\r\n\r\n")) != 1 {
				t.Fatal("a client could not send")
			}
		}
	}
	var waits []time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range n {
		<-tick.C
		l.SetDeadline(time.Now().Add(time.Second))
		fd, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		sa, err := unix.Getpeername(fd)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, now.Sub(completed[uint16(sa.(*unix.SockaddrInet4).Port)]))
	}
	stats, err := rec.Stats()
	if err != nil {
		t.Fatal(err)
	}
	rec.stop()
	id, _ := netns.Stat(ns.Path)
	var h *Histogram
	for i := range stats {
		if stats[i].Netns == id.Inode && stats[i].Listener.Port() == l.Port {
			h = &stats[i].AcceptWait
		}
	}
	if h == nil {
		t.Fatalf("no accept-wait histogram for port %d: %+v", l.Port, stats)
	}
	slices.Sort(waits)
	median := waits[(len(waits)-1)/2]
	got, want := h.QuantileSlot(0.5), SlotOf(median)
	lo, hi := slotBounds(got)
	t.Logf("server measured median %v (slot %d); tracer p50 slot %d [%v, %v), p99 %v, max %v, count %d",
		median, want, got, lo, hi, h.Quantile(0.99), h.Max, h.Count)
	if h.Count != n {
		t.Errorf("histogram counted %d accepts, want %d", h.Count, n)
	}
	if got < want-1 || got > want+1 {
		t.Errorf("median slot %d, server's %d: more than one slot apart", got, want)
	}
}

// TestRawTracepoints: the fallback programs see the same drops.
func TestRawTracepoints(t *testing.T) {
	rec := startTracer(t, Options{Programs: ProgramsRawTp})
	if rec.Programs() != ProgramsRawTp {
		t.Fatalf("programs %q", rec.Programs())
	}
	_, moved, evs, run, ports := scenarioRun(t, rec, "overflow", scenario.Params{Backlog: 3, Clients: 10, Duration: 1200 * time.Millisecond})
	n := byStage(evs)
	if got, want := n[StageSyn]+n[StageAck], moved["ListenOverflows"]; got != want || want == 0 {
		t.Errorf("syn+ack events %d, ListenOverflows moved %d", got, want)
	}
	checkEvents(t, evs, run, netip.MustParseAddr("127.0.0.1"), ports)
}

// TestFilters: --port and --netns act in the kernel; a listener that
// existed before the trace is found by the iterator, with its owner.
func TestFilters(t *testing.T) {
	testutil.RequireRoot(t)
	ns, err := lab.NewNamespace("btrace")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	other, err := lab.NewNamespace("btrace")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	listen := func(ns *lab.Namespace) *lab.Listener {
		l, err := ns.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	kept, dropped, elsewhere := listen(ns), listen(ns), listen(other)
	id, _ := netns.Stat(ns.Path)
	rec := startTracer(t, Options{
		Namespaces:     []Namespace{{Path: ns.Path, Name: ns.Name}},
		OnlyNamespaces: true,
		Ports:          []uint16{kept.Port, elsewhere.Port},
	})
	from := Monotonic()
	for _, x := range []struct {
		ns *lab.Namespace
		l  *lab.Listener
	}{{ns, kept}, {ns, dropped}, {other, elsewhere}} {
		c, err := x.ns.Dial(netip.AddrPortFrom(x.l.Addr, x.l.Port), 5) // backlog 1: 3 refused
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	to := Monotonic()
	rec.mu.Lock()
	var evs []Event
	for _, e := range rec.events {
		if e.Monotonic >= from && e.Monotonic <= to {
			evs = append(evs, e)
		}
	}
	rec.mu.Unlock()
	if len(evs) != 3 {
		t.Errorf("%d events, want 3 (one listener's refused clients): %+v", len(evs), evs)
	}
	for _, e := range evs {
		if e.Netns != id.Inode || e.Listener.Port() != kept.Port || e.Stage != StageSyn {
			t.Errorf("event of another listener: %+v", e)
		}
		if e.Namespace != ns.Name {
			t.Errorf("namespace name %q, want %q", e.Namespace, ns.Name)
		}
		// Found by the iterator: the owner comes from /proc.
		if len(e.Processes) == 0 || e.Processes[0].PID != os.Getpid() {
			t.Errorf("owner %v, want this process", e.Processes)
		}
	}
}

func TestCheck(t *testing.T) {
	err := Check()
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	var me *MissingError
	if !errors.As(err, &me) {
		t.Fatalf("Check as non-root: %v", err)
	}
	t.Log(err)
}

// TestIPv6: an IPv6 listener, and a dual-stack one reached over IPv4.
func TestIPv6(t *testing.T) {
	testutil.RequireRoot(t)
	ns, err := lab.NewNamespace("btrace")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	rec := startTracer(t, Options{})
	id, _ := netns.Stat(ns.Path)
	from := Monotonic()
	for _, c := range []struct{ listen, dial string }{
		{"[::1]:0", "::1"},
		{"[::]:0", "127.0.0.1"},
	} {
		l, err := ns.Listen(netip.MustParseAddrPort(c.listen), 1)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cl, err := ns.Dial(netip.AddrPortFrom(netip.MustParseAddr(c.dial), l.Port), 5) // 2 queued, 3 refused
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		time.Sleep(100 * time.Millisecond)
		ports := cl.LocalPorts()
		var n int
		for _, e := range rec.window(id.Inode, from, Monotonic()) {
			if e.Listener.Port() != l.Port {
				continue
			}
			n++
			if e.Stage != StageSyn || e.Listener.Addr() != l.Addr || e.Peer.Addr() != netip.MustParseAddr(c.dial) ||
				e.Local != netip.MustParseAddr(c.dial) || !slices.Contains(ports, e.Peer.Port()) {
				t.Errorf("listening on %s, dialing %s: event %+v", c.listen, c.dial, e)
			}
		}
		if n != 3 {
			t.Errorf("listening on %s, dialing %s: %d events, want 3", c.listen, c.dial, n)
		}
	}
}

// TestOwnerAfterFork: a server that daemonizes calls listen(2) in a pid that
// exits right after forking; events and stats must name the process that
// holds the socket now, not the dead one.
func TestOwnerAfterFork(t *testing.T) {
	testutil.RequireRoot(t)
	py := testutil.RequireTool(t, "/usr/bin/python3")
	ns, err := lab.NewNamespace("btrace")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	id, _ := netns.Stat(ns.Path)
	rec := startTracer(t, Options{Namespaces: []Namespace{{Path: ns.Path, Name: ns.Name}}, OnlyNamespaces: true})
	// The parent listens (backlog 1), forks, prints the child's pid and
	// exits; the child never accepts and ends after 20 s (or at cleanup).
	script := `import os, socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
pid = os.fork()
if pid:
    print(s.getsockname()[1], pid, flush=True); os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
time.sleep(20)`
	out := testutil.InNetns(t, ns.Name, py, "-c", script)
	var port, child int
	if _, err := fmt.Sscan(out, &port, &child); err != nil {
		t.Fatalf("server said %q: %v", out, err)
	}
	defer syscall.Kill(child, syscall.SIGKILL) // by pid: the child this test made
	from := Monotonic()
	c, err := ns.Dial(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), 6)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(1500 * time.Millisecond) // one SYN retransmit at least
	evs := rec.window(id.Inode, from, Monotonic())
	if len(evs) == 0 {
		t.Fatal("no drop events")
	}
	for _, e := range evs {
		if len(e.Processes) != 1 || e.Processes[0].PID != child {
			t.Fatalf("%v: owner %+v, want the forked child %d (the parent that listened is gone)", e.Stage, e.Processes, child)
		}
	}
	stats, err := rec.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Listener.Port() == uint16(port) && (len(s.Processes) != 1 || s.Processes[0].PID != child) {
			t.Errorf("stats owner %+v, want %d", s.Processes, child)
		}
	}
}

// TestReuseportMembers: two SO_REUSEPORT members on one address, neither
// accepting (the lab's reuseport scenario). Each member is its own
// listener: its drop events carry its inode and equal its own sk_drops
// where the kernel names the member (fentry on tcp_conn_request); where it
// does not, an event is put on a member only if that member alone met the
// drop condition, and the others name no member and count as ambiguous —
// never the wrong one. Closing the full member reports the clients it
// reset, as many as the scenario saw reset.
func TestReuseportMembers(t *testing.T) {
	rec := startTracer(t, Options{})
	before, err := rec.Counters()
	if err != nil {
		t.Fatal(err)
	}
	res, moved, quiet, run, _ := scenarioRun(t, rec, "reuseport", scenario.Params{Backlog: 4, Clients: 30})
	id, err := netns.Stat(run.Server.Path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	rec.mu.Lock()
	var evs []Event
	for _, e := range rec.events {
		if e.Netns == id.Inode {
			evs = append(evs, e)
		}
	}
	rec.mu.Unlock()
	after, err := rec.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 2 {
		t.Fatalf("members %+v", res.Listeners)
	}
	perMember := map[uint64]int64{}
	var drops, unknown int64
	var closes []Event
	for _, e := range evs {
		switch {
		case e.Stage == StageClose:
			closes = append(closes, e)
		case e.Time.After(res.CountedAt):
		default:
			drops++
			perMember[e.Inode]++
			if e.Inode == 0 {
				unknown++
			}
		}
	}
	// The totals, cut at a quiet moment after the run.
	var total int64
	for _, e := range quiet {
		if e.Stage != StageClose {
			total++
		}
	}
	if total != moved["ListenDrops"] || total == 0 {
		t.Errorf("drop events %d, ListenDrops moved %d", total, moved["ListenDrops"])
	}
	exact := rec.MemberHook() == "fentry"
	// Per member, against the members' sk_drops the scenario read when it
	// settled. Under heavy load its reading and the instant it reports can
	// fall on either side of a retransmission wave: compare only when the
	// events up to that instant are exactly what the members counted.
	var sum int64
	for _, l := range res.Listeners {
		sum += int64(*l.Drops)
	}
	if drops != sum || drops != res.Moved["ListenDrops"] {
		t.Logf("events %d up to the scenario's count, members' sk_drops %d, ListenDrops %d: read apart, per-member counts not compared",
			drops, sum, res.Moved["ListenDrops"])
	} else {
		for _, l := range res.Listeners {
			got, want := perMember[uint64(l.Inode)], int64(*l.Drops)
			t.Logf("member %d: %d events, sk_drops %d (member told by %s)", l.Inode, got, want, rec.MemberHook())
			if got > want || exact && got != want {
				t.Errorf("member %d: %d events, its sk_drops moved %d", l.Inode, got, want)
			}
		}
	}
	if exact && unknown > 0 {
		t.Errorf("%d events name no member though fentry names it", unknown)
	}
	if amb := int64(after.Ambiguous - before.Ambiguous); amb < unknown {
		t.Errorf("%d events name no member, ambiguous counter moved %d", unknown, amb)
	}
	// The closing member's reset clients (tcp_migrate_req=0 in a new namespace).
	if len(closes) != 1 {
		t.Fatalf("close events %+v", closes)
	}
	c := closes[0]
	if c.Migrated || int64(c.Resets) != res.Observed["clients_reset"] || int64(c.AcceptQueue) != res.Observed["closing_member_queue"] {
		t.Errorf("close event: migrated %v, resets %d, accept queue %d; the scenario saw %d clients reset, %d queued",
			c.Migrated, c.Resets, c.AcceptQueue, res.Observed["clients_reset"], res.Observed["closing_member_queue"])
	}
	_ = moved
}
