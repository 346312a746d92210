package snapshot

import (
	"cmp"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
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

// manyListeners makes n listeners with many equal keys (few ports, queues
// and namespaces), so the sort's tie-breaking shows.
func manyListeners(n int) []Listener {
	r := rand.New(rand.NewPCG(1, 2))
	ls := make([]Listener, n)
	for i := range ls {
		ls[i] = Listener{Netns: uint64(r.IntN(3)), Port: uint16(r.IntN(50)), AcceptQueue: uint32(r.IntN(4)),
			Backlog: uint32(r.IntN(3)), Inode: uint32(r.IntN(n)), Processes: []Process{{PID: i}}}
		if r.IntN(2) == 0 {
			ls[i].Drops = u(uint64(r.IntN(3)))
		}
		if r.IntN(2) == 0 {
			q := uint32(r.IntN(2))
			ls[i].SynQueue = &q
		}
	}
	return ls
}

// TestSortFullestStable: the same order as a stable sort on the same keys,
// equal listeners (here told apart by PID, which the sort ignores) in
// their original order.
func TestSortFullestStable(t *testing.T) {
	ls := manyListeners(5000)
	want := slices.Clone(ls)
	slices.SortStableFunc(want, func(a, b Listener) int {
		fa, _ := a.Fill()
		fb, _ := b.Fill()
		return cmp.Or(cmp.Compare(fb, fa), cmp.Compare(b.AcceptQueue, a.AcceptQueue), cmp.Compare(b.SynQueueLen(), a.SynQueueLen()),
			cmp.Compare(deref(b.Drops), deref(a.Drops)), cmp.Compare(a.Netns, b.Netns), cmp.Compare(a.Port, b.Port),
			a.Address.Compare(b.Address), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Inode, b.Inode))
	})
	SortFullest(ls)
	for i := range ls {
		if ls[i].Processes[0].PID != want[i].Processes[0].PID {
			t.Fatalf("position %d: listener %d, a stable sort puts %d there", i, ls[i].Processes[0].PID, want[i].Processes[0].PID)
		}
	}
}

func BenchmarkSortFullest10000(b *testing.B) {
	orig := manyListeners(10000)
	ls := make([]Listener, len(orig))
	for b.Loop() {
		copy(ls, orig)
		SortFullest(ls)
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
