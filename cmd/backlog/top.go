package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"golang.org/x/term"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/render"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// ownersEvery is how many intervals top reuses owners for when no listener
// appeared: the /proc/*/fd walk costs a few µs per descriptor of the whole
// host (docs/performance.md), too much to repeat every second.
const ownersEvery = 10

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("top", stdout)
	interval := fs.Duration("interval", time.Second, "refresh `interval`")
	sample := fs.Duration("sample", sampler.DefaultInterval, "how often accept queues are sampled for the peak between refreshes")
	count := fs.Int("count", 0, "stop after this many refreshes (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print one JSON object per interval (the default when stdout is not a terminal)")
	var filters filterFlags
	filters.register(fs)
	var rf replayFlags
	rf.register(fs, "replay", "replay this recording (backlog record) with a time cursor instead of watching live")
	if err := parse(fs, args); err != nil {
		return err
	}
	if rf.path != "" || rf.since != "" || rf.until != "" {
		return replayTop(ctx, &rf, &filters, *asJSON, stdout, stderr)
	}
	if *interval < 100*time.Millisecond || *sample < 10*time.Millisecond || *sample > *interval || *count < 0 {
		return usageError{errors.New("backlog top: want --interval >= 100ms, 10ms <= --sample <= --interval, --count >= 0")}
	}
	// Resolve once now: a bad --netns is a usage error before anything
	// starts, not a line repeated every interval.
	if _, _, err := filters.options(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	smp := sampler.New(sampler.Options{Interval: *sample, NoBPF: filters.noBPF})
	go smp.Run(ctx)
	frames := make(chan render.FrameMsg)
	go drive(ctx, &filters, smp, *interval, *count, frames)

	if *asJSON || !isTerminal(stdout) {
		return stream(ctx, stdout, stderr, frames)
	}
	p := tea.NewProgram(render.NewLive(*interval), tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(stdout))
	stopped := make(chan error, 1)
	go func() {
		var err error
		for f := range frames {
			if f.Err != nil {
				err = f.Err
				break
			}
			p.Send(f)
		}
		stopped <- err
		// --count reached or the collector stopped: leave the screen.
		p.Quit()
	}()
	_, err := p.Run()
	select {
	case serr := <-stopped:
		if serr != nil {
			return serr // said once, after the terminal is restored
		}
	default:
	}
	if errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, context.Canceled) {
		return nil // Ctrl-C or SIGTERM: the terminal is restored
	}
	return err
}

// stream prints each delta as one JSON line, and on stderr what it cannot
// see when that changes. An error ends it: drive stops at the first.
func stream(ctx context.Context, stdout, stderr io.Writer, frames <-chan render.FrameMsg) error {
	enc := snapshot.NewDeltaEncoder(stdout) // what encoding/json writes, cheaper
	said := ""
	for f := range frames {
		if f.Err != nil {
			return f.Err
		}
		if f.Notes != said && f.Notes != "" {
			fmt.Fprintf(stderr, "backlog: %s\n", f.Notes)
		}
		said = f.Notes
		if err := enc.Encode(&f.Delta); err != nil {
			return err
		}
	}
	return nil // --count reached, or Ctrl-C: top's normal end
}

// drive collects every interval, re-resolving namespaces so that new ones
// appear and vanished ones go, and sends one frame per interval; it closes
// frames when ctx ends, after count frames, or after a frame with an error:
// a namespace asked for by --netns that went away, or nothing left to read,
// is said once and ends top (exit 1).
func drive(ctx context.Context, filters *filterFlags, smp *sampler.Sampler, interval time.Duration, count int, frames chan<- render.FrameMsg) {
	defer close(frames)
	var prev *snapshot.Snapshot
	owners := &collect.OwnerCache{MaxAge: ownersEvery * interval}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; count == 0 || n < count; n++ {
		opts, warning, err := filters.options()
		var snap *snapshot.Snapshot
		if err == nil {
			smp.SetTargets(opts.Targets)
			opts.Owners = owners
			snap, err = collect.Collect(ctx, opts)
		}
		if errors.Is(err, collect.ErrBadSpec) || errors.Is(err, netns.ErrGone) && len(filters.netns) > 0 {
			// It resolved at start (runTop): it went away since, before
			// this interval's listing or between it and the read.
			err = fmt.Errorf("--netns %s: the namespace went away (deleted, or its last process exited); nothing left to watch",
				strings.Join(filters.netns, " --netns "))
		}
		if ctx.Err() != nil {
			return
		}
		var f render.FrameMsg
		if err != nil {
			f.Err = err
		} else {
			if warning != "" {
				snap.Warnings = append([]string{warning}, snap.Warnings...)
			}
			peaks := map[snapshot.ListenerKey]uint32{}
			for k, v := range smp.Take() {
				peaks[snapshot.ListenerKey{Netns: k.Netns, Inode: k.Inode}] = v
			}
			f.Delta = snapshot.Diff(prev, snap, peaks)
			f.Notes = notes(snap)
			prev = snap
		}
		select {
		case frames <- f:
		case <-ctx.Done():
			return
		}
		if f.Err != nil {
			return
		}
		if count != 0 && n+1 == count {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// replayTop shows a recording in the live view, or streams its deltas as
// JSON lines like live top when stdout is not a terminal.
func replayTop(ctx context.Context, rf *replayFlags, filters *filterFlags, asJSON bool, stdout, stderr io.Writer) error {
	src, err := rf.source(filters, stderr)
	if err != nil {
		return err
	}
	deltas, dmg, err := src.Deltas()
	reportDamage(stderr, dmg)
	if err != nil {
		return err
	}
	if asJSON || !isTerminal(stdout) {
		enc := json.NewEncoder(stdout)
		for _, d := range deltas {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	interval := time.Second
	for _, d := range deltas {
		if d.Interval > 0 {
			interval = time.Duration(d.Interval * float64(time.Second)).Round(time.Millisecond)
			break
		}
	}
	p := tea.NewProgram(render.NewReplay(deltas, interval, 0), tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(stdout))
	_, err = p.Run()
	if errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
