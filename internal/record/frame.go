// Package record is backlog's recording format: snapshots with the sampled
// accept-queue peaks of their interval and, with eBPF, the trace tallies,
// written as checksummed records so that a torn tail is found and skipped
// (docs/record.md). The encoder and decoder are pure; file.go opens files.
package record

import (
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Format is the version of the frame payload, written in every Header.
const Format = 1

// Header opens every file and every restart of a recorder within one.
type Header struct {
	Format  int       `json:"format"`
	Program string    `json:"program"` // "backlog VERSION"
	Host    string    `json:"host,omitempty"`
	Kernel  string    `json:"kernel,omitempty"`
	Started time.Time `json:"started"`
	// Interval between frames and between accept-queue samples.
	Interval float64 `json:"interval_seconds"`
	Sample   float64 `json:"sample_seconds"`
	BPF      bool    `json:"bpf"`
	// Args are the recorder's command-line filters, for the reader to know
	// what was left out.
	Args []string `json:"args,omitempty"`
}

// Frame is one recorded interval: the snapshot at its end, the peak accept
// queue of each listener during it, and, with eBPF, what the trace counted
// since the recorder started it (cumulative, like a kernel counter).
type Frame struct {
	Snapshot *snapshot.Snapshot
	Peaks    map[snapshot.ListenerKey]uint32
	// Trace is nil when the recorder did not trace.
	Trace []trace.ListenerStats
	// Header is the header in force for this frame.
	Header *Header
}

// Delta is the frame as the live views see it: rates against prev (nil for
// the first frame of a recording) and the peaks of the interval.
func (f *Frame) Delta(prev *Frame) snapshot.Delta {
	var p *snapshot.Snapshot
	if prev != nil {
		p = prev.Snapshot
	}
	return snapshot.Diff(p, f.Snapshot, f.Peaks)
}
