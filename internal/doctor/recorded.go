package doctor

import (
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// NewObservation starts an observation at first, for windows that were not
// watched live but read back (backlog doctor --from): the caller Adds each
// later snapshot, then sets Last, Duration and Trace.
func NewObservation(first *snapshot.Snapshot) Observation {
	return Observation{
		First:         first,
		FullWindows:   map[snapshot.ListenerKey]int{},
		FullAtRefresh: map[snapshot.ListenerKey]int{},
		PeakAccept:    map[snapshot.ListenerKey]uint32{},
		PeakSyn:       map[snapshot.ListenerKey]uint32{},
	}
}

// Add folds one refresh and the peak accept queues of its interval into the
// observation, as Observe does with each refresh it collects.
func (o *Observation) Add(s *snapshot.Snapshot, peaks map[snapshot.ListenerKey]uint32) {
	sp := make(map[sampler.Key]uint32, len(peaks))
	for k, v := range peaks {
		sp[sampler.Key{Netns: k.Netns, Inode: k.Inode}] = v
	}
	o.record(s, sp)
}
