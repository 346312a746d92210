package collect

import (
	"net/netip"
	"testing"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func TestSynIndex(t *testing.T) {
	yes := true
	ls := []snapshot.Listener{
		{Address: netip.MustParseAddr("0.0.0.0"), Port: 80},
		{Address: netip.MustParseAddr("192.0.2.1"), Port: 80},
		{Address: netip.MustParseAddr("::"), Port: 443},
		{Address: netip.MustParseAddr("::"), Port: 8443, V6Only: &yes},
		{Address: netip.MustParseAddr("::ffff:192.0.2.7"), Port: 9000},
		{Address: netip.MustParseAddr("2001:db8::1"), Port: 80},
		// A SO_REUSEPORT group of two: only the group's total is known.
		{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080},
		{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080},
	}
	x := newSynIndex(ls)
	for _, c := range []struct {
		local string
		ok    bool
		full  bool
	}{
		{local: "192.0.2.1:80", ok: true},          // exact beats 0.0.0.0
		{local: "192.0.2.9:80", ok: true},          // wildcard
		{local: "[::ffff:192.0.2.9]:80", ok: true}, // v4-mapped request to the v4 wildcard
		{local: "192.0.2.9:443", ok: true},         // v4 client on a dual-stack listener
		{local: "[2001:db8::5]:443", ok: true},     // v6 client on ::
		{local: "192.0.2.9:8443", ok: false},       // v6only refuses v4
		{local: "192.0.2.7:9000", ok: true},        // v4-mapped listener address
		{local: "[2001:db8::1]:80", ok: true},      // v6 exact, not the v4 wildcard
		{local: "127.0.0.1:22", ok: false},
		{local: "192.0.2.1:80", ok: true, full: true}, // a Fast Open child: its own queue
		{local: "10.0.0.1:8080", ok: true},
		{local: "10.0.0.1:8080", ok: true},
		{local: "10.0.0.1:8080", ok: true},
	} {
		if got := x.add(netip.MustParseAddrPort(c.local), c.full); got != c.ok {
			t.Errorf("add(%s) = %v, want %v", c.local, got, c.ok)
		}
	}
	x.apply()
	want := []uint32{2, 1, 2, 0, 1, 1}
	for i, w := range want {
		if ls[i].SynQueue == nil || *ls[i].SynQueue != w || ls[i].GroupSynQueue != nil {
			t.Errorf("%s:%d syn_queue = %v, want %d", ls[i].Address, ls[i].Port, ls[i].SynQueue, w)
		}
	}
	for _, l := range ls[6:] {
		if l.SynQueue != nil || l.GroupSynQueue == nil || *l.GroupSynQueue != 3 {
			t.Errorf("member %s:%d: syn_queue %v group_syn_queue %v, want unknown and 3", l.Address, l.Port, l.SynQueue, l.GroupSynQueue)
		}
	}
	if ls[1].FastOpenQueue != 1 || ls[0].FastOpenQueue != 0 {
		t.Errorf("fast_open_queue = %d, %d, want 0, 1", ls[0].FastOpenQueue, ls[1].FastOpenQueue)
	}
}
