package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("record", stdout)
	output := fs.String("output", "", "recording `path`: a directory (files rotate inside it) or a file (appended to); see docs/record.md")
	interval := fs.Duration("interval", time.Second, "time between frames")
	sample := fs.Duration("sample", sampler.DefaultInterval, "how often accept queues are sampled for each frame's peak")
	duration := fs.Duration("duration", 0, "stop this long after the first frame (default: until SIGINT or SIGTERM)")
	bpf := fs.Bool("bpf", false, "also record eBPF drop events by stage and accept-wait histograms (needs CAP_BPF and CAP_PERFMON, docs/trace.md)")
	maxSize := byteSize(64 << 20)
	fs.Var(&maxSize, "max-size", "directory mode: start a new file once the current one is this `size` (e.g. 64MiB)")
	maxAge := fs.Duration("max-age", time.Hour, "directory mode: start a new file once the current one is this old")
	keep := fs.Int("keep", 168, "directory mode: how many files to keep, oldest deleted first (0: all)")
	keyEvery := fs.Int("key-every", record.DefaultKeyEvery, "frames between key frames (a reader resumes at one after damage)")
	var filters filterFlags
	filters.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *output == "":
		return usageError{errors.New("backlog record: --output is required (a directory such as /var/lib/backlog, or a file)")}
	case *interval < 100*time.Millisecond || *sample < 10*time.Millisecond || *sample > *interval:
		return usageError{errors.New("backlog record: want --interval >= 100ms and 10ms <= --sample <= --interval")}
	case *duration < 0 || *maxAge < 0 || *keep < 0 || *keyEvery < 1:
		return usageError{errors.New("backlog record: --duration, --max-age and --keep cannot be negative, --key-every must be at least 1")}
	}
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	if warning != "" {
		fmt.Fprintf(stderr, "backlog: %s\n", warning)
	}
	out, err := record.OpenOutput(*output, record.OutputOptions{MaxSize: int64(maxSize), MaxAge: *maxAge, Keep: *keep})
	if err != nil {
		return err
	}
	var tr *trace.Tracer
	if *bpf {
		if err := trace.Check(); err != nil {
			out.Close()
			return fmt.Errorf("--bpf: %w", err)
		}
		if tr, err = trace.New(traceOptions(&filters, opts)); err != nil {
			out.Close()
			return fmt.Errorf("--bpf: %w", err)
		}
		defer tr.Close()
	}
	host, _ := os.Hostname()
	w := record.NewWriter(out, record.Header{
		Program: "backlog " + version, Host: host, Kernel: kernelRelease(), Started: time.Now().UTC(),
		Interval: interval.Seconds(), Sample: sample.Seconds(), BPF: *bpf, Args: args,
	}, *keyEvery)
	defer w.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if tr != nil {
		go tr.Run(ctx, nil)
	}
	smp := sampler.New(sampler.Options{Interval: *sample, NoBPF: filters.noBPF})
	smpDone := make(chan struct{})
	go func() { smp.Run(ctx); close(smpDone) }()
	defer func() { cancel(); <-smpDone }()
	fmt.Fprintf(stderr, "backlog: recording every %v to %s\n", *interval, out.Path())
	return recordLoop(ctx, cancel, *duration, &filters, smp, tr, w, *interval, stderr)
}

// recordLoop writes one frame every interval until ctx ends or, with
// duration, until duration after the first frame: the first collection
// (loading the BPF iterators, walking owners) can take seconds on a slow
// machine, and a recording of a duration holds that duration.
func recordLoop(ctx context.Context, cancel context.CancelFunc, duration time.Duration, filters *filterFlags, smp *sampler.Sampler, tr *trace.Tracer, w *record.Writer, interval time.Duration, stderr io.Writer) error {
	owners := &collect.OwnerCache{MaxAge: ownersEvery * interval}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for first := true; ; first = false {
		f, err := recordFrame(ctx, filters, smp, tr, owners)
		if ctx.Err() != nil {
			return nil // signalled or --duration reached: the file is closed whole
		}
		if first && duration > 0 {
			stop := time.AfterFunc(duration, cancel)
			defer stop.Stop()
		}
		if err == nil {
			err = w.Write(f)
			if _, unsafe := errors.AsType[*record.UnsafeError](err); unsafe {
				return err
			}
		}
		// Say each new failure once; a recorder keeps going.
		if msg := fmt.Sprint(err); err != nil && msg != lastErr {
			fmt.Fprintf(stderr, "backlog: %v\n", err)
		}
		lastErr = fmt.Sprint(err)
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
}

func recordFrame(ctx context.Context, filters *filterFlags, smp *sampler.Sampler, tr *trace.Tracer, owners *collect.OwnerCache) (*record.Frame, error) {
	opts, warning, err := filters.options()
	if err != nil {
		return nil, err
	}
	smp.SetTargets(opts.Targets)
	opts.Owners = owners
	snap, err := collect.Collect(ctx, opts)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		snap.Warnings = append([]string{warning}, snap.Warnings...)
	}
	f := &record.Frame{Snapshot: snap, Peaks: map[snapshot.ListenerKey]uint32{}}
	for k, v := range smp.Take() {
		f.Peaks[snapshot.ListenerKey{Netns: k.Netns, Inode: k.Inode}] = v
	}
	if tr != nil {
		if f.Trace, err = tr.Stats(); err != nil {
			return nil, fmt.Errorf("reading the eBPF trace: %w", err)
		}
		if f.Trace == nil {
			f.Trace = []trace.ListenerStats{}
		}
	}
	return f, nil
}

// byteSize is a flag of bytes with an optional KiB, MiB or GiB suffix.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (e.g. 64MiB)", s)
	}
	*b = byteSize(n * mult)
	return nil
}
