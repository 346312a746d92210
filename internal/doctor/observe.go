package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Observe watches the namespaces of opts for d: a full snapshot at each end,
// a collection every second in between, and the sampler's 100 ms peaks, the
// same sources as ls, top and serve. traced, when not nil, is a running
// tracer's Stats (doctor --bpf), read at the end of the window.
func Observe(ctx context.Context, opts collect.Options, d time.Duration, traced func() ([]trace.ListenerStats, error)) (Observation, error) {
	o := Observation{
		Duration:      d,
		FullWindows:   map[snapshot.ListenerKey]int{},
		FullAtRefresh: map[snapshot.ListenerKey]int{},
		PeakAccept:    map[snapshot.ListenerKey]uint32{},
		PeakSyn:       map[snapshot.ListenerKey]uint32{},
	}
	smp := sampler.New(sampler.Options{})
	defer smp.Close()
	targets := opts.Targets
	if len(targets) == 0 {
		targets = []collect.Target{{}}
	}
	// A namespace that cannot be sampled rests on the refreshes alone; the
	// collection reports why it failed.
	smp.SetTargets(targets)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go smp.Run(sctx)

	first, err := collect.Collect(ctx, opts)
	if err != nil {
		return o, err
	}
	o.First = first
	smp.Take()
	start := time.Now()
	deadline := start.Add(d)
	refresh := opts
	refresh.NoOwners = true
	for {
		if wait := min(time.Second, time.Until(deadline)); wait > 0 {
			select {
			case <-ctx.Done():
				return o, ctx.Err()
			case <-time.After(wait):
			}
		}
		last := !time.Now().Before(deadline)
		cur := refresh
		if last {
			cur = opts // the final snapshot carries owners
		}
		snap, err := collect.Collect(ctx, cur)
		if err != nil {
			return o, fmt.Errorf("observing: %w", err)
		}
		o.record(snap, smp.Take())
		if last {
			o.Last = snap
			o.Duration = time.Since(start)
			if traced != nil {
				if o.Trace, err = traced(); err != nil {
					return o, fmt.Errorf("reading the eBPF trace: %w", err)
				}
			}
			return o, nil
		}
	}
}

// record folds one refresh into the observation.
func (o *Observation) record(s *snapshot.Snapshot, peaks map[sampler.Key]uint32) {
	o.Windows++
	for _, l := range s.Listeners {
		k := l.Key()
		p := max(peaks[sampler.Key{Netns: k.Netns, Inode: k.Inode}], l.AcceptQueue)
		o.PeakAccept[k] = max(o.PeakAccept[k], p)
		o.PeakSyn[k] = max(o.PeakSyn[k], l.SynQueue)
		if p > l.Backlog {
			o.FullWindows[k]++
		}
		if l.Full() {
			o.FullAtRefresh[k]++
		}
	}
}
