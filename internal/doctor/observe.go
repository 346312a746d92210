package doctor

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Observe watches the namespaces of opts for d: a full snapshot at each end,
// a collection every second in between, and the sampler's 100 ms peaks, the
// same sources as ls, top and serve. traced, when not nil, is a running
// tracer's Stats (doctor --bpf), read at the end of the window.
//
// When ctx ends before the window does (SIGINT, SIGTERM, `timeout N`), the
// observation so far is returned with Interrupted set: one last snapshot
// with owners is taken (bounded by interruptedGrace) so what was seen can
// still be diagnosed. Only when not even the first snapshot was taken does
// Observe return ctx's error.
func Observe(ctx context.Context, opts collect.Options, d time.Duration, traced func() ([]trace.ListenerStats, error)) (Observation, error) {
	o := Observation{
		Duration:      d,
		FullWindows:   map[snapshot.ListenerKey]int{},
		FullAtRefresh: map[snapshot.ListenerKey]int{},
		PeakAccept:    map[snapshot.ListenerKey]uint32{},
		PeakSyn:       map[snapshot.ListenerKey]uint32{},
	}
	// The SYN-queue limit of this kernel, probed before the window opens.
	var perr error
	o.SynQueueFullAtBacklog, perr = lab.SynQueueFullAtBacklog()
	smp := sampler.New(sampler.Options{NoBPF: opts.NoBPF})
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
	latest := first
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
				return o.interrupted(opts, start, latest), nil
			case <-time.After(wait):
			}
		}
		last := !time.Now().Before(deadline)
		cur := refresh
		if last {
			cur = opts // the final snapshot carries owners
		}
		snap, err := collect.Collect(ctx, cur)
		if ctx.Err() != nil {
			return o.interrupted(opts, start, latest), nil
		}
		if err != nil {
			return o, fmt.Errorf("observing: %w", err)
		}
		o.record(snap, smp.Take())
		latest = snap
		if last {
			o.Last = snap
			o.Cmdlines, o.GoVersions = owners(opts.ProcRoot, snap)
			o.Duration = time.Since(start)
			if traced != nil {
				if o.Trace, err = traced(); err != nil {
					return o, fmt.Errorf("reading the eBPF trace: %w", err)
				}
			}
			if perr != nil {
				o.Last.Warnings = append(o.Last.Warnings, fmt.Sprintf("assuming the SYN queue holds backlog+1 (Linux 6.13+ and stable kernels since 2025): %v", perr))
			}
			return o, nil
		}
	}
}

// interruptedGrace bounds the last snapshot of an interrupted window: a
// collection takes milliseconds, and `timeout` kills after its own grace.
const interruptedGrace = 2 * time.Second

// interrupted ends a window cut short: the last snapshot carries owners
// when it can be taken in time, else the latest refresh stands in.
func (o *Observation) interrupted(opts collect.Options, start time.Time, latest *snapshot.Snapshot) Observation {
	o.Interrupted = true
	o.Duration = time.Since(start)
	o.Last = latest
	ctx, cancel := context.WithTimeout(context.Background(), interruptedGrace)
	defer cancel()
	if snap, err := collect.Collect(ctx, opts); err == nil {
		o.record(snap, nil)
		o.Last = snap
	}
	o.Cmdlines, o.GoVersions = owners(opts.ProcRoot, o.Last)
	return *o
}

// record folds one refresh into the observation.
func (o *Observation) record(s *snapshot.Snapshot, peaks map[sampler.Key]uint32) {
	o.Windows++
	for _, l := range s.Listeners {
		k := l.Key()
		p := max(peaks[sampler.Key{Netns: k.Netns, Inode: k.Inode}], l.AcceptQueue)
		o.PeakAccept[k] = max(o.PeakAccept[k], p)
		o.PeakSyn[k] = max(o.PeakSyn[k], synSeen(&l))
		if p > l.Backlog {
			o.FullWindows[k]++
		}
		if l.Full() {
			o.FullAtRefresh[k]++
		}
	}
}

// owners reads the command lines of s's owners (/proc/PID/cmdline,
// NUL-separated: they name interpreted servers, python3 -m http.server,
// and the backlog flags given, memcached -b) and, for those that are Go
// programs, the Go version their executable was built with (a Go
// listener's backlog is the somaxconn the process read once). A process
// gone or unreadable is left out.
func owners(procRoot string, s *snapshot.Snapshot) (map[int][]string, map[int]string) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	args, gover := map[int][]string{}, map[int]string{}
	for _, l := range s.Listeners {
		for _, p := range l.Processes {
			if _, ok := args[p.PID]; ok {
				continue
			}
			dir := procRoot + "/" + strconv.Itoa(p.PID)
			b, err := os.ReadFile(dir + "/cmdline")
			if err != nil {
				continue
			}
			args[p.PID] = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			// Only the .go.buildinfo section (or the first 64 KiB of
			// the data segment) is read; a non-Go binary fails fast.
			if bi, err := buildinfo.ReadFile(dir + "/exe"); err == nil {
				gover[p.PID] = bi.GoVersion
			}
		}
	}
	return args, gover
}

// synSeen is a listener's SYN queue or, for a SO_REUSEPORT member read
// with sock_diag (its own unknown), its group's: the rules judge that
// against the whole group's capacity, never as one member's.
func synSeen(l *snapshot.Listener) uint32 {
	if l.SynQueue == nil && l.GroupSynQueue != nil {
		return *l.GroupSynQueue
	}
	return l.SynQueueLen()
}
