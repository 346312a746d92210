package record

import (
	"cmp"
	"slices"
	"time"

	"github.com/backlog-dev/backlog/internal/trace"
)

func durationNS(ns int64) time.Duration { return time.Duration(ns) }

// slicesSortTrace orders trace entries as the tracer does: by namespace,
// then listener.
func slicesSortTrace(ts []trace.ListenerStats) {
	slices.SortFunc(ts, func(a, b trace.ListenerStats) int {
		return cmp.Or(cmp.Compare(a.Netns, b.Netns), a.Listener.Compare(b.Listener))
	})
}
