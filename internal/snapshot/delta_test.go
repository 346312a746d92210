package snapshot

import (
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	prev := &Snapshot{
		TakenAt:    t0,
		Namespaces: []Namespace{{Inode: 1, Counters: Counters{ListenOverflows: u(100)}}},
		Listeners:  []Listener{{Netns: 1, Inode: 7, AcceptQueue: 0, Drops: u(10)}},
	}
	cur := &Snapshot{
		TakenAt:    t0.Add(2 * time.Second),
		Namespaces: []Namespace{{Inode: 1, Counters: Counters{ListenOverflows: u(144)}}, {Inode: 2}},
		Listeners: []Listener{
			{Netns: 1, Inode: 7, AcceptQueue: 3, Drops: u(54)},
			{Netns: 2, Inode: 9, AcceptQueue: 4, Drops: u(5)},
		},
	}
	d := Diff(prev, cur, map[ListenerKey]uint32{{1, 7}: 6, {2, 9}: 1})
	if d.Interval != 2 {
		t.Errorf("interval %v", d.Interval)
	}
	if r := d.Namespaces[0].Rates["ListenOverflows"]; r != 22 {
		t.Errorf("ListenOverflows/s = %v, want 22", r)
	}
	if d.Namespaces[1].Rates != nil {
		t.Errorf("a namespace new in this snapshot has rates: %v", d.Namespaces[1].Rates)
	}
	l0, l1 := d.Listeners[0], d.Listeners[1]
	if l0.AcceptQueuePeak != 6 || l0.DropsPerSecond == nil || *l0.DropsPerSecond != 22 {
		t.Errorf("listener 7: peak %d drops/s %v", l0.AcceptQueuePeak, l0.DropsPerSecond)
	}
	// A sampled peak below the current value (sampled before it grew) is
	// raised to the current value; a new listener has no rate yet.
	if l1.AcceptQueuePeak != 4 || l1.DropsPerSecond != nil {
		t.Errorf("listener 9: peak %d drops/s %v", l1.AcceptQueuePeak, l1.DropsPerSecond)
	}
	first := Diff(nil, cur, nil)
	if first.Interval != 0 || first.Listeners[0].AcceptQueuePeak != 3 || first.Listeners[0].DropsPerSecond != nil {
		t.Errorf("first delta %+v", first.Listeners[0])
	}
}
