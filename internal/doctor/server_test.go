package doctor

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

func findRule(fs []Finding, rule string) *Finding {
	for i := range fs {
		if fs[i].Rule == rule {
			return &fs[i]
		}
	}
	return nil
}

var (
	quiet = snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	k7    = snapshot.ListenerKey{Netns: 1, Inode: 7}
)

// Drops that grow are an overflow though no sample caught the queue full
// (nginx at backlog=4, one burst of 40 connects); drops with no
// ListenOverflows in the namespace are not (RSTs ending half-open
// handshakes: an hping3 SYN scan).
func TestOverflowFromDropsAlone(t *testing.T) {
	moved := snapshot.Counters{ListenOverflows: u(20), ListenDrops: u(20), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	l1 := listener(80, 0, 4, 35)
	l1.Processes = []snapshot.Process{{PID: 9, Comm: "nginx", State: "S"}}
	o := observation(quiet, moved, listener(80, 0, 4, 0), l1, sys)
	fs := Diagnose(o)
	f := findRule(fs, "accept-queue-overflow")
	if f == nil || f.Severity != Critical || !Trouble(fs) {
		t.Fatalf("drops without a sampled peak: %v", rules(fs))
	}
	if strings.Contains(f.Summary, "peak 0/4") || !strings.Contains(f.Summary, "drops grew by 35") || f.Evidence["listener_drops"] != 35 {
		t.Errorf("summary %q evidence %v", f.Summary, f.Evidence)
	}
	if !strings.Contains(f.Advice, "backlog=128") || f.Server != "nginx" {
		t.Errorf("advice %q server %q", f.Advice, f.Server)
	}
	// backlog=4 is nginx's configuration, not a cap: no requested 511.
	if f.RequestedBacklog != 0 || findRule(fs, "backlog-capped-at-listen") != nil {
		t.Errorf("requested %d from %q", f.RequestedBacklog, f.RequestedFrom)
	}

	scan := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	o = observation(quiet, scan, listener(80, 0, 4, 0), listener(80, 0, 4, 50), sys)
	if fs := Diagnose(o); fs[0].Rule != "healthy" {
		t.Errorf("a SYN scan's RSTs called an overflow: %v", rules(fs))
	}

	// With eBPF the listener's own events decide, and the summary quotes
	// them, not a peak no sample saw.
	o = observation(quiet, moved, listener(80, 0, 4, 0), l1, sys)
	st := trace.ListenerStats{ListenerID: trace.ListenerID{Netns: 1, Listener: netip.AddrPortFrom(o.Last.Listeners[0].Address, 80), Inode: uint64(o.Last.Listeners[0].Inode)}}
	st.Drops = map[trace.Stage]uint64{trace.StageSyn: 16}
	o.Trace = []trace.ListenerStats{st}
	f = findRule(Diagnose(o), "accept-queue-overflow")
	if f == nil || strings.Contains(f.Summary, "peak 0/4") || !strings.Contains(f.Summary, "eBPF saw 16") || f.Evidence["events_syn"] != 16 {
		t.Errorf("with trace: %+v", f)
	}
}

func TestOwnerStopped(t *testing.T) {
	moved := snapshot.Counters{ListenOverflows: u(12), ListenDrops: u(12), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	l1 := listener(6379, 512, 511, 12)
	l1.Processes = []snapshot.Process{{PID: 42, Comm: "redis-server", State: "T"}}
	o := observation(quiet, moved, listener(6379, 0, 511, 0), l1, sys)
	o.PeakAccept[k7], o.FullAtRefresh[k7], o.FullWindows[k7] = 512, 10, 10
	fs := Diagnose(o)
	f := findRule(fs, "owner-stopped")
	if f == nil || f.Severity != Critical || f.Command != "kill -CONT 42" || f.Evidence["stopped_pid"] != 42 {
		t.Fatalf("stopped: %v %+v", rules(fs), f)
	}
	ov := findRule(fs, "accept-queue-overflow")
	if ov == nil || strings.Contains(ov.Advice, "threads") || !strings.Contains(ov.Advice, "stopped") ||
		ov.RequestedBacklog != 511 || ov.RequestedFrom != "redis's default" {
		t.Errorf("overflow beside a stopped owner: %+v", ov)
	}
	// A stopped master beside running serving workers is no stopped server.
	l1.Processes = []snapshot.Process{{PID: 1, Comm: "nginx", State: "T", Role: snapshot.RoleMaster},
		{PID: 2, Comm: "nginx", State: "S", PPID: 1, Role: snapshot.RoleWorker, Serving: true}}
	o = observation(quiet, moved, listener(80, 0, 511, 0), l1, sys)
	if f := findRule(Diagnose(o), "owner-stopped"); f != nil {
		t.Errorf("stopped master called the acceptor: %+v", f)
	}
	// The serving worker stopped: its member is the stopped one.
	l1.Processes[0].State, l1.Processes[1].State = "S", "T"
	o = observation(quiet, moved, listener(80, 0, 511, 0), l1, sys)
	if f := findRule(Diagnose(o), "owner-stopped"); f == nil || f.Command != "kill -CONT 2" {
		t.Errorf("stopped worker: %+v", f)
	}
}

func TestConnectionLimits(t *testing.T) {
	// memcached at -c calls listen(fd, 0).
	l1 := listener(11211, 1, 0, 0)
	l1.Processes = []snapshot.Process{{PID: 5, Comm: "memcached", State: "S"}}
	o := observation(quiet, quiet, listener(11211, 0, 1024, 0), l1, sys)
	o.PeakAccept[k7], o.FullAtRefresh[k7] = 1, 10
	fs := Diagnose(o)
	f := findRule(fs, "connection-limit")
	if f == nil || !strings.Contains(f.Advice, "Raise `-c`") || f.Evidence["backlog"] != 0 {
		t.Fatalf("memcached: %v %+v", rules(fs), f)
	}
	if ov := findRule(fs, "accept-queue-full"); ov == nil || strings.Contains(ov.Advice, "threads") {
		t.Errorf("memcached told to add threads: %+v", ov)
	}
	// haproxy idle at maxconn: its queue stays full; the advice is maxconn.
	l1 = listener(80, 101, 100, 30)
	l1.Processes = []snapshot.Process{{PID: 6, Comm: "haproxy", State: "S"}}
	moved := snapshot.Counters{ListenOverflows: u(30), ListenDrops: u(30), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	o = observation(quiet, moved, listener(80, 0, 100, 0), l1, sys)
	o.PeakAccept[k7], o.FullAtRefresh[k7] = 101, 10
	if f := findRule(Diagnose(o), "accept-queue-overflow"); f == nil || !strings.Contains(f.Advice, "maxconn") || strings.Contains(f.Advice, "threads") {
		t.Errorf("haproxy: %+v", f)
	}
	// A backlog from the command line is exact.
	s, args := serverOf([]snapshot.Process{{PID: 5, Comm: "memcached"}}, map[int][]string{5: {"memcached", "-b", "2048"}}, nil)
	if r := s.requestedBacklog(args, 1024, 1024); r.backlog != 2048 || !strings.Contains(r.source, "command line") {
		t.Errorf("memcached -b: %+v", r)
	}
	s, args = serverOf([]snapshot.Process{{PID: 7, Comm: "python3"}}, map[int][]string{7: {"python3", "-m", "http.server", "--bind", "::"}}, nil)
	if r := s.requestedBacklog(args, 5, 4096); s.name != "Python http.server" || r.backlog != 5 {
		t.Errorf("python: %s %+v", s.name, r)
	}
	// A Go program asks for somaxconn as it read it at start; a backlog
	// that is no somaxconn came from a listen(2) of its own.
	goOwner := []snapshot.Process{{PID: 9, Comm: "caddy"}}
	s, args = serverOf(goOwner, map[int][]string{9: {"caddy", "run"}}, map[int]string{9: "go1.24.2"})
	for _, c := range []struct{ effective, somax, want int64 }{{128, 1024, 128}, {4096, 65535, 4096}, {1024, 1024, 1024}, {16, 4096, 0}, {1000, 4096, 0}} {
		if r := s.requestedBacklog(args, c.effective, c.somax); s.name != "caddy (Go)" || r.backlog != c.want || c.want > 0 && !strings.Contains(r.source, "go1.24.2") {
			t.Errorf("Go %d under somaxconn %d: %s %+v, want %d", c.effective, c.somax, s.name, r, c.want)
		}
	}
	if s, _ := serverOf([]snapshot.Process{{PID: 9, Comm: "nginx"}}, nil, map[int]string{9: "go1.24.2"}); s.name != "nginx" {
		t.Errorf("a server known by name is %q", s.name)
	}
}

func TestDeferAcceptIsNoFlood(t *testing.T) {
	c1 := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(9), TCPDeferAcceptDrop: u(30)}
	c0 := quiet
	c0.TCPDeferAcceptDrop = u(0)
	o := observation(c0, c1, listener(80, 0, 16, 0), listener(80, 0, 16, 0), sys)
	f := findRule(Diagnose(o), "syncookies-sent")
	if f == nil || !strings.Contains(f.Summary, "TCP_DEFER_ACCEPT") || strings.Contains(f.Summary, "(a flood") || f.Evidence["TCPDeferAcceptDrop"] != 30 {
		t.Errorf("defer accept: %+v", f)
	}
	c1.SyncookiesSent = u(0)
	o = observation(c0, c1, listener(80, 0, 16, 0), listener(80, 0, 16, 0), sys)
	if f := findRule(Diagnose(o), "defer-accept"); f == nil || f.Severity != Info {
		t.Errorf("defer accept alone: %v", rules(Diagnose(o)))
	}
}

// Two SO_REUSEPORT members: one full (its worker stopped), one idle.
func TestReuseportImbalance(t *testing.T) {
	full, idle := listener(80, 9, 8, 6), listener(80, 0, 8, 0)
	full.Processes = []snapshot.Process{{PID: 1, Comm: "nginx", Role: snapshot.RoleMaster}, {PID: 2, Comm: "nginx", State: "T", Serving: true, Role: snapshot.RoleWorker}}
	idle.Processes = []snapshot.Process{{PID: 1, Comm: "nginx", Role: snapshot.RoleMaster}, {PID: 3, Comm: "nginx", State: "S", Serving: true, Role: snapshot.RoleWorker}}
	o := observation(quiet, quiet, listener(80, 0, 8, 0), full, sys)
	idle.Netns, idle.Inode = 1, 8
	first := listener(80, 0, 8, 0)
	first.Netns, first.Inode = 1, 8
	o.First.Listeners = append(o.First.Listeners, first)
	o.Last.Listeners = append(o.Last.Listeners, idle)
	fs := Diagnose(o)
	f := findRule(fs, "reuseport-imbalance")
	if f == nil || f.Evidence["members"] != 2 || f.Evidence["members_full"] != 1 || f.Evidence["listener_drops_full"] != 6 ||
		len(f.Processes) != 1 || f.Processes[0].PID != 2 || !strings.Contains(f.Why, "tcp_migrate_req") {
		t.Fatalf("imbalance: %v %+v", rules(fs), f)
	}
	// Events whose member the trace could not tell (no inode) are the
	// group's, not the idle member's.
	st := trace.ListenerStats{ListenerID: trace.ListenerID{Netns: 1, Listener: netip.AddrPortFrom(idle.Address, 80)}}
	st.Drops = map[trace.Stage]uint64{trace.StageSyn: 6}
	o.Trace = []trace.ListenerStats{st}
	for _, f := range Diagnose(o) {
		if f.Rule == "accept-queue-overflow" && f.Evidence["accept_queue_peak"] == 0 {
			t.Errorf("the idle member blamed for the group's events: %+v", f)
		}
	}
	o.Trace = nil
	// Both full: no imbalance to speak of.
	o.Last.Listeners[1].AcceptQueue = 9
	if f := findRule(Diagnose(o), "reuseport-imbalance"); f != nil {
		t.Errorf("both full called imbalanced: %+v", f)
	}
}

// sock_diag cannot tell a SO_REUSEPORT group's half-open requests apart
// (the kernel names no listener on a request): each member carries the
// group's total, its own unknown. 30 for two members of backlog 16 is no
// full queue; 34 is the whole group full.
func TestReuseportSynQueueNotOneMembers(t *testing.T) {
	a, b := listener(80, 0, 16, 0), listener(80, 0, 16, 0)
	group := func(n uint32) {
		for _, l := range []*snapshot.Listener{&a, &b} {
			l.SynQueue, l.GroupSynQueue = nil, &n
		}
	}
	b.Netns, b.Inode = 1, 8
	// 17 is backlog+1 of one member, but it is the group's count.
	for _, n := range []uint32{17, 30} {
		group(n)
		o := observation(quiet, quiet, listener(80, 0, 16, 0), a, sys)
		o.Last.Listeners = append(o.Last.Listeners, b)
		if f := findRule(Diagnose(o), "syn-queue-full"); f != nil {
			t.Errorf("one member blamed for the group's %d requests: %+v", n, f)
		}
	}
	group(34)
	o := observation(quiet, quiet, listener(80, 0, 16, 0), a, sys)
	o.Last.Listeners = append(o.Last.Listeners, b)
	f := findRule(Diagnose(o), "syn-queue-full")
	if f == nil || f.Evidence["members"] != 2 || f.Evidence["group_syn_capacity"] != 34 || f.Evidence["group_syn_queue_peak"] != 34 ||
		f.Evidence["syn_queue_peak"] != 0 || f.Inode != 0 || f.Processes != nil || !strings.Contains(f.Summary, "SO_REUSEPORT group of 2") {
		t.Errorf("full group: %+v", f)
	}
}

// TestClosedWithQueue: with --bpf, a listener that closed with clients
// queued (trace stage close) is a finding of its own, from the trace alone:
// the listener is gone from the snapshot.
func TestClosedWithQueue(t *testing.T) {
	moved := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	o := observation(quiet, moved, listener(80, 0, 4, 0), listener(80, 0, 4, 0), sys)
	if f := findRule(Diagnose(o), "closed-with-queue"); f != nil {
		t.Fatalf("without a trace: %+v", f)
	}
	st := trace.ListenerStats{ListenerID: trace.ListenerID{Netns: 1, Listener: netip.MustParseAddrPort("0.0.0.0:80"), Inode: 77}}
	st.Drops = map[trace.Stage]uint64{trace.StageClose: 5}
	o.Trace = []trace.ListenerStats{st}
	fs := Diagnose(o)
	f := findRule(fs, "closed-with-queue")
	if f == nil || f.Evidence["resets"] != 5 || f.Evidence["inode"] != 77 || f.Listener != "0.0.0.0:80" ||
		!strings.Contains(f.Command, "net.ipv4.tcp_migrate_req=1") || !Trouble(fs) {
		t.Errorf("finding %+v", f)
	}
	// Migrated connections (0 resets) are no trouble.
	st.Drops[trace.StageClose] = 0
	if f := findRule(Diagnose(o), "closed-with-queue"); f != nil {
		t.Errorf("0 resets: %+v", f)
	}
}

// TestRequestedFromTrace: the backlog the trace saw passed to listen(2)
// is what the owner asked for ("asked for 511, got 4"), whatever its
// command line or defaults suggest.
func TestRequestedFromTrace(t *testing.T) {
	moved := snapshot.Counters{ListenOverflows: u(20), ListenDrops: u(20), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	l1 := listener(80, 0, 4, 35)
	l1.Processes = []snapshot.Process{{PID: 9, Comm: "server", State: "S"}}
	o := observation(quiet, moved, listener(80, 0, 4, 0), l1, sys)
	last := &o.Last.Listeners[0]
	st := trace.ListenerStats{ListenerID: trace.ListenerID{Netns: last.Netns, Listener: netip.AddrPortFrom(last.Address, 80), Inode: uint64(last.Inode)}}
	st.Drops = map[trace.Stage]uint64{trace.StageSyn: 16}
	asked := int64(511)
	st.RequestedBacklog = &asked
	o.Trace = []trace.ListenerStats{st}
	f := findRule(Diagnose(o), "accept-queue-overflow")
	if f == nil || f.RequestedBacklog != 511 || !strings.Contains(f.RequestedFrom, "listen() call") {
		t.Errorf("finding %+v", f)
	}
}
