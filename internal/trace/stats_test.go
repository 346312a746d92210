package trace

import (
	"net/netip"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func TestTally(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:8080")
	b := netip.MustParseAddrPort("[::]:443")
	var tl tally
	owner := []snapshot.Process{{PID: 1, Comm: "server"}}
	for _, e := range []Event{
		{Netns: 1, Listener: a, Stage: StageSyn, Processes: owner},
		{Netns: 1, Listener: a, Stage: StageSyn},
		{Netns: 1, Listener: a, Stage: StageCookie},
		{Netns: 2, Listener: a, Stage: StageAck, Namespace: "blue"},
	} {
		tl.add(&e)
	}
	var h Histogram
	h.Slots[SlotOf(time.Millisecond)], h.Count = 1, 1
	stats := tl.merge(map[ListenerID]*Histogram{{Netns: 1, Listener: b}: &h}, func(n uint64) string {
		return map[uint64]string{1: "host"}[n]
	})
	if len(stats) != 3 {
		t.Fatalf("%d listeners, want 3: %+v", len(stats), stats)
	}
	// Ordered by namespace, then listener (IPv4 before IPv6).
	s := stats[0]
	if s.Netns != 1 || s.Listener != a || s.Namespace != "host" || s.Drops[StageSyn] != 2 || s.Dropped() != 2 ||
		len(s.Processes) != 1 || s.Processes[0].Comm != "server" {
		t.Errorf("first %+v", s)
	}
	if s := stats[1]; s.Listener != b || s.AcceptWait.Count != 1 || s.Dropped() != 0 {
		t.Errorf("second %+v", s)
	}
	if s := stats[2]; s.Netns != 2 || s.Namespace != "blue" || s.Drops[StageAck] != 1 {
		t.Errorf("third %+v", s)
	}
	// merge returns copies: counting on does not change them.
	tl.add(&Event{Netns: 1, Listener: a, Stage: StageSyn})
	if stats[0].Drops[StageSyn] != 2 {
		t.Error("stats changed after merge")
	}
}
