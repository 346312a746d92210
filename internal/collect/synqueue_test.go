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
	}
	x := newSynIndex(ls)
	for _, c := range []struct {
		local string
		ok    bool
	}{
		{"192.0.2.1:80", true},          // exact beats 0.0.0.0
		{"192.0.2.9:80", true},          // wildcard
		{"[::ffff:192.0.2.9]:80", true}, // v4-mapped request to the v4 wildcard
		{"192.0.2.9:443", true},         // v4 client on a dual-stack listener
		{"[2001:db8::5]:443", true},     // v6 client on ::
		{"192.0.2.9:8443", false},       // v6only refuses v4
		{"192.0.2.7:9000", true},        // v4-mapped listener address
		{"[2001:db8::1]:80", true},      // v6 exact, not the v4 wildcard
		{"127.0.0.1:22", false},
	} {
		if got := x.add(netip.MustParseAddrPort(c.local)); got != c.ok {
			t.Errorf("add(%s) = %v, want %v", c.local, got, c.ok)
		}
	}
	x.apply()
	want := []uint32{2, 1, 2, 0, 1, 1}
	for i, w := range want {
		if ls[i].SynQueue != w {
			t.Errorf("%s:%d syn_queue = %d, want %d", ls[i].Address, ls[i].Port, ls[i].SynQueue, w)
		}
	}
}
