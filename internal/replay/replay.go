// Package replay is a recording read back as one more source for the views:
// the deltas `top --replay` shows, the snapshot `ls --at` prints and the
// observation `doctor --from` judges, from the same model as live.
package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Source is a recording, a window of it, and the filters of the view.
type Source struct {
	Path   string
	Window record.Window
	// Filter, when set, trims every snapshot as the live filters would.
	Filter func(*snapshot.Snapshot)
}

// Frames calls fn with each frame of the window, filtered.
func (s Source) Frames(fn func(*record.Frame) error) ([]record.Damage, error) {
	return record.Read(s.Path, s.Window, func(f *record.Frame) error {
		if s.Filter != nil {
			s.Filter(f.Snapshot)
		}
		return fn(f)
	})
}

// ErrEmpty says the window holds no frame.
var ErrEmpty = errors.New("no recorded frame in that window")

// Deltas returns the window as top shows it live: one delta per frame,
// rates against the frame before (within the window).
func (s Source) Deltas() ([]snapshot.Delta, []record.Damage, error) {
	var (
		out  []snapshot.Delta
		prev *record.Frame
	)
	dmg, err := s.Frames(func(f *record.Frame) error {
		// A header between frames is a restart of the recorder (or a new
		// file): rates across it would span the gap, so start afresh.
		if prev != nil && prev.Header != f.Header && f.Header.Started.After(prev.Snapshot.TakenAt) {
			prev = nil
		}
		out = append(out, f.Delta(prev))
		prev = f
		return nil
	})
	if err == nil && len(out) == 0 {
		err = s.empty()
	}
	return out, dmg, err
}

func (s Source) empty() error {
	switch {
	case !s.Window.Since.IsZero() && !s.Window.Until.IsZero():
		return fmt.Errorf("%w (%s to %s)", ErrEmpty, s.Window.Since.Format(time.RFC3339), s.Window.Until.Format(time.RFC3339))
	case !s.Window.Since.IsZero():
		return fmt.Errorf("%w (from %s)", ErrEmpty, s.Window.Since.Format(time.RFC3339))
	case !s.Window.Until.IsZero():
		return fmt.Errorf("%w (until %s)", ErrEmpty, s.Window.Until.Format(time.RFC3339))
	}
	return fmt.Errorf("%w: the recording is empty", ErrEmpty)
}

// At returns the last frame taken at or before t.
func (s Source) At(t time.Time) (*record.Frame, []record.Damage, error) {
	s.Window.Until = t
	var last *record.Frame
	dmg, err := s.Frames(func(f *record.Frame) error { last = f; return nil })
	if err == nil && last == nil {
		err = s.empty()
	}
	return last, dmg, err
}

// Observe builds what live doctor would have observed over the window: the
// first frame is its start, every later frame one refresh with the peaks
// of its interval, the last frame its end; the eBPF tallies of the window
// are the last frame's minus the first's.
func (s Source) Observe() (doctor.Observation, []record.Damage, error) {
	var (
		o           doctor.Observation
		first, last *record.Frame
	)
	dmg, err := s.Frames(func(f *record.Frame) error {
		if first == nil {
			first = f
			o = doctor.NewObservation(f.Snapshot)
			return nil
		}
		o.Add(f.Snapshot, f.Peaks)
		last = f
		return nil
	})
	if err != nil {
		return o, dmg, err
	}
	if first == nil {
		return o, dmg, s.empty()
	}
	if last == nil {
		return o, dmg, fmt.Errorf("%w: one frame only, a window needs two", ErrEmpty)
	}
	o.Last = last.Snapshot
	o.Duration = last.Snapshot.TakenAt.Sub(first.Snapshot.TakenAt)
	if last.Trace != nil {
		o.Trace = Since(last.Trace, first.Trace)
	}
	return o, dmg, nil
}

// Since returns what the cumulative tallies cur counted after prev: drops
// by stage and accept waits. A tally that went down (the tracer restarted)
// counts from zero. The largest wait cannot be split and stays cur's.
func Since(cur, prev []trace.ListenerStats) []trace.ListenerStats {
	before := make(map[trace.ListenerID]*trace.ListenerStats, len(prev))
	for i := range prev {
		before[prev[i].ListenerID] = &prev[i]
	}
	out := make([]trace.ListenerStats, 0, len(cur))
	for _, c := range cur {
		d := c
		d.Drops = make(map[trace.Stage]uint64, len(c.Drops))
		p := before[c.ListenerID]
		for st, n := range c.Drops {
			if p != nil && p.Drops[st] <= n {
				n -= p.Drops[st]
			}
			d.Drops[st] = n
		}
		if p != nil && p.AcceptWait.Count <= c.AcceptWait.Count {
			h := &d.AcceptWait
			for i := range h.Slots {
				h.Slots[i] -= min(h.Slots[i], p.AcceptWait.Slots[i])
			}
			h.Count -= p.AcceptWait.Count
			h.Sum -= min(h.Sum, p.AcceptWait.Sum)
		}
		out = append(out, d)
	}
	return out
}
