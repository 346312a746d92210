package snapshot

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func u(v uint64) *uint64 { return &v }

func TestDelta(t *testing.T) {
	prev := Counters{ListenOverflows: u(10), ListenDrops: u(12)}
	cur := Counters{ListenOverflows: u(54), ListenDrops: u(56), TCPReqQFullDrop: u(3)}
	d := cur.Delta(prev)
	if d["ListenOverflows"] != 44 || d["ListenDrops"] != 44 || len(d) != 2 {
		t.Errorf("delta = %v", d)
	}
}

func TestSortFullest(t *testing.T) {
	one := uint32(1)
	ls := []Listener{
		{Port: 1, AcceptQueue: 0, Backlog: 128},
		{Port: 2, AcceptQueue: 6, Backlog: 5},
		{Port: 3, AcceptQueue: 0, Backlog: 0},
		{Port: 4, AcceptQueue: 64, Backlog: 128, SynQueue: &one},
		{Port: 5, AcceptQueue: 64, Backlog: 128},
	}
	SortFullest(ls)
	var got []uint16
	for _, l := range ls {
		got = append(got, l.Port)
	}
	want := []uint16{2, 4, 5, 1, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
	if !ls[0].Full() || ls[1].Full() {
		t.Error("Full()")
	}
}

// TestJSONAbsentNotZero: what the kernel did not report stays out of the
// JSON; a real zero stays in.
func TestJSONAbsentNotZero(t *testing.T) {
	zero := int64(0)
	s := Snapshot{
		Namespaces: []Namespace{{Inode: 1, Name: "host", Sysctls: Sysctls{TCPSyncookies: &zero}, Counters: Counters{ListenDrops: u(0)}}},
		Listeners:  []Listener{{Netns: 1, Family: FamilyInet, Address: netip.MustParseAddr("0.0.0.0"), Port: 80}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{`"tcp_syncookies":0`, `"ListenDrops":0`, `"processes":null`, `"address":"0.0.0.0"`, `"accept_queue":0`} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON lacks %s: %s", want, out)
		}
	}
	for _, absent := range []string{`somaxconn`, `ListenOverflows`, `"drops"`} {
		if strings.Contains(out, absent) {
			t.Errorf("JSON has made-up %s: %s", absent, out)
		}
	}
}
