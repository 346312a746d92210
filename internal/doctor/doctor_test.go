package doctor

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func u(v uint64) *uint64 { return &v }
func i(v int64) *int64   { return &v }

// observation builds a two-snapshot window over one namespace and listener.
func observation(first, last snapshot.Counters, l0, l1 snapshot.Listener, sys snapshot.Sysctls) Observation {
	ns := func(c snapshot.Counters) []snapshot.Namespace {
		return []snapshot.Namespace{{Inode: 1, Name: "blue", Counters: c, Sysctls: sys}}
	}
	l0.Netns, l1.Netns, l0.Inode, l1.Inode = 1, 1, 7, 7
	return Observation{
		Duration: 10 * time.Second, Windows: 10,
		First:         &snapshot.Snapshot{Namespaces: ns(first), Listeners: []snapshot.Listener{l0}},
		Last:          &snapshot.Snapshot{Namespaces: ns(last), Listeners: []snapshot.Listener{l1}},
		FullWindows:   map[snapshot.ListenerKey]int{},
		FullAtRefresh: map[snapshot.ListenerKey]int{},
		PeakAccept:    map[snapshot.ListenerKey]uint32{},
		PeakSyn:       map[snapshot.ListenerKey]uint32{},
	}
}

var sys = snapshot.Sysctls{Somaxconn: i(4096), TCPMaxSynBacklog: i(128), TCPSyncookies: i(0), TCPAbortOnOverflow: i(0)}

func listener(port uint16, aq, backlog uint32, drops uint64) snapshot.Listener {
	return snapshot.Listener{Address: netip.MustParseAddr("0.0.0.0"), Port: port, AcceptQueue: aq, Backlog: backlog, Drops: u(drops)}
}

func rules(fs []Finding) []string {
	var r []string
	for _, f := range fs {
		r = append(r, f.Rule)
	}
	return r
}

func TestBurstVersusSlow(t *testing.T) {
	c0 := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	c1 := snapshot.Counters{ListenOverflows: u(40), ListenDrops: u(40), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	l1 := listener(80, 3, 128, 40)
	l1.Processes = []snapshot.Process{{PID: 9, Comm: "nginx", State: "S"}}
	o := observation(c0, c1, listener(80, 0, 128, 0), l1, sys)
	k := snapshot.ListenerKey{Netns: 1, Inode: 7}
	o.PeakAccept[k], o.FullWindows[k], o.FullAtRefresh[k] = 129, 2, 0
	fs := Diagnose(o)
	// nginx asks for 511 by default; 128 is the somaxconn of kernels
	// before 5.4: restart it to pick up today's 4096.
	if r := rules(fs); len(r) != 2 || r[1] != "backlog-capped-at-listen" || fs[1].RequestedBacklog != 511 || fs[1].Server != "nginx" ||
		!strings.Contains(fs[1].Summary, "restart it to pick up the new somaxconn") {
		t.Errorf("restart: %v %+v", r, fs)
	}
	// The namespace's counter is context, not this listener's proof.
	if _, ok := fs[0].Evidence["ListenOverflows"]; ok || fs[0].Context["ListenOverflows"] != 40 || fs[0].Evidence["listener_drops"] != 40 {
		t.Errorf("evidence %v context %v", fs[0].Evidence, fs[0].Context)
	}
	f := fs[0]
	// 4 x 128 = 512 fits under somaxconn 4096: only the application's
	// backlog needs raising.
	if f.Rule != "accept-queue-overflow" || f.Command != "" || !strings.Contains(f.Advice, "backlog=512") {
		t.Fatalf("burst: %v %q %q", rules(fs), f.Command, f.Advice)
	}
	if f.Summary == "" || f.Evidence["windows_full"] != 2 || !Trouble(fs) {
		t.Errorf("burst finding %+v", f)
	}
	if want := "accept queue overflows in bursts (peak 129/128): the backlog is too small for them"; f.Summary != want {
		t.Errorf("summary %q", f.Summary)
	}
	o.Last.Namespaces[0].Sysctls.Somaxconn = i(256)
	o.Last.Namespaces[0].Path = "/run/netns/blue"
	if c := Diagnose(o)[0].Command; c != "nsenter --net=/run/netns/blue sysctl -w net.core.somaxconn=512" {
		t.Errorf("command %q", c)
	}
	o.FullAtRefresh[k] = 9
	if s := Diagnose(o)[0].Summary; s[:30] != "accept queue stays full (129/1" {
		t.Errorf("slow: %q", s)
	}
}

func TestUnexplainedDropsAndTheThreeQuarterRule(t *testing.T) {
	c0 := snapshot.Counters{ListenOverflows: u(5), ListenDrops: u(5), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	c1 := snapshot.Counters{ListenOverflows: u(5), ListenDrops: u(211), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	o := observation(c0, c1, listener(80, 0, 4096, 0), listener(80, 0, 4096, 206), sys)
	o.PeakSyn[snapshot.ListenerKey{Netns: 1, Inode: 7}] = 97
	fs := Diagnose(o)
	var f *Finding
	for j := range fs {
		if fs[j].Rule == "unexplained-listen-drops" {
			f = &fs[j]
		}
	}
	if f == nil {
		t.Fatalf("findings %v", rules(fs))
	}
	if f.Evidence["unexplained"] != 206 || f.Evidence["listener_drops_total"] != 206 || f.Command != "sysctl -w net.ipv4.tcp_max_syn_backlog=512" {
		t.Errorf("%+v", f)
	}
}

func TestHealthyAndUnreadable(t *testing.T) {
	c := snapshot.Counters{ListenOverflows: u(5), ListenDrops: u(5)}
	o := observation(c, c, listener(80, 0, 128, 0), listener(80, 0, 128, 0), sys)
	fs := Diagnose(o)
	if len(fs) != 1 || fs[0].Rule != "healthy" || Trouble(fs) {
		t.Errorf("healthy: %v", rules(fs))
	}
	// A namespace that failed is not diagnosed from made-up numbers.
	o.Last.Namespaces[0].Error = "vanished before it could be read"
	o.Last.Namespaces[0].Counters = snapshot.Counters{}
	if fs := Diagnose(o); len(fs) != 1 || fs[0].Rule != "healthy" {
		t.Errorf("unreadable namespace: %v", rules(fs))
	}
}

// TestWordsMatchEvidence: a full queue with no drop in the window says
// what a full queue does, not that SYNs were dropped; the healthy verdict
// of one namespace names it and counts in the singular.
func TestWordsMatchEvidence(t *testing.T) {
	c := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	o := observation(c, c, listener(80, 6, 5, 0), listener(80, 6, 5, 0), sys)
	k := snapshot.ListenerKey{Netns: 1, Inode: 7}
	o.PeakAccept[k], o.FullWindows[k], o.FullAtRefresh[k] = 6, 10, 10
	f := Diagnose(o)[0]
	if f.Rule != "accept-queue-full" || f.Evidence["listener_drops"] != 0 || strings.Contains(f.Why, "dropped further") || !strings.Contains(f.Why, "None was counted") {
		t.Errorf("%s with listener_drops=%d: why %q", f.Rule, f.Evidence["listener_drops"], f.Why)
	}
	o = observation(c, c, listener(80, 0, 5, 0), listener(80, 0, 5, 0), sys)
	h := Diagnose(o)[0]
	if h.Rule != "healthy" || h.Namespace != "blue" || !strings.Contains(h.Summary, "in 1 namespace and 1 listener over") {
		t.Errorf("healthy: namespace %q, summary %q", h.Namespace, h.Summary)
	}
}
