package snapshot

import (
	"testing"
	"time"
)

// BenchmarkDiff10000: one refresh of top at 10,000 listeners.
func BenchmarkDiff10000(b *testing.B) {
	prev := &Snapshot{TakenAt: time.Unix(0, 0), Listeners: manyListeners(10000)}
	cur := &Snapshot{TakenAt: time.Unix(1, 0), Listeners: manyListeners(10000)}
	peaks := map[ListenerKey]uint32{}
	for b.Loop() {
		Diff(prev, cur, peaks)
	}
}
