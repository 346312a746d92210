// Package sampler watches accept queues between snapshots: every interval it
// reads each listener's accept-queue length and keeps the peak until the
// next Take, so bursts shorter than a scrape or a screen refresh still show.
package sampler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
)

// DefaultInterval is how often Run samples when Options.Interval is zero.
const DefaultInterval = 100 * time.Millisecond

// DefaultResolveEvery is how often Run re-resolves namespaces when
// Options.ResolveEvery is zero.
const DefaultResolveEvery = 30 * time.Second

// Key names one listening socket: its namespace's inode and its own, as in
// snapshot.Listener's Netns and Inode.
type Key struct {
	Netns uint64
	Inode uint32
}

// Options configure a Sampler.
type Options struct {
	// Interval between samples; DefaultInterval when zero.
	Interval time.Duration
	// Resolve, when set, lists the namespaces to watch; Run calls it at
	// start and every ResolveEvery, so namespaces that appear or vanish are
	// followed even when nobody calls SetTargets.
	Resolve      func() ([]collect.Target, error)
	ResolveEvery time.Duration
	// Logger hears when a namespace starts or stops failing; nil is silent.
	Logger *slog.Logger
	// NoBPF samples with sock_diag even where the BPF iterators load
	// (collect.OpenQueueReader).
	NoBPF bool
}

// Stats say what sampling has cost so far.
type Stats struct {
	Samples    uint64        // rounds over every namespace
	Busy       time.Duration // wall time spent in them
	Errors     uint64        // failed namespace reads, and namespaces that could not be opened
	Namespaces int           // watched now
	Listeners  int           // seen in the last round
	// Quiet counts namespace reads skipped because no TCP accept queue
	// could have grown since one found them all empty (the iterator
	// path: collect.QueueReader).
	Quiet uint64
}

// Sampler keeps the peak accept queue of every listener in the namespaces
// it watches. It holds each namespace open (collect.QueueReader), so a
// sample never looks a namespace up again. Its methods are safe for
// concurrent use.
type Sampler struct {
	opts Options

	mu        sync.Mutex
	nss       map[uint64]*namespace // by namespace inode
	selfInode uint64                // the namespace of Target{} once opened
	stats     Stats
	closed    bool
}

type namespace struct {
	name    string
	q       *collect.QueueReader
	peaks   map[uint32]peak // by socket inode
	round   uint64
	failing bool
}

type peak struct {
	max   uint32
	round uint64 // the last round that saw the socket
}

// New returns a sampler that watches nothing until SetTargets or Run.
func New(opts Options) *Sampler {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.ResolveEvery <= 0 {
		opts.ResolveEvery = DefaultResolveEvery
	}
	return &Sampler{opts: opts, nss: make(map[uint64]*namespace)}
}

// Interval is the time between samples.
func (s *Sampler) Interval() time.Duration { return s.opts.Interval }

// SetTargets makes the sampler watch exactly these namespaces: it opens a
// socket in each new one and closes those of namespaces no longer listed,
// which also lets the kernel free a namespace that has vanished. Namespaces
// that cannot be opened are skipped and reported in the error.
func (s *Sampler) SetTargets(targets []collect.Target) error {
	s.mu.Lock()
	want := make(map[uint64]bool, len(targets))
	var toOpen []collect.Target
	for _, t := range targets {
		inode := t.Inode
		if t.Path == "" {
			inode = s.selfInode
		}
		if _, ok := s.nss[inode]; ok && inode != 0 {
			want[inode] = true
			continue
		}
		toOpen = append(toOpen, t)
	}
	s.mu.Unlock()

	// Entering namespaces takes a thread switch each: do it unlocked.
	type opened struct {
		t     collect.Target
		q     *collect.QueueReader
		inode uint64
	}
	var (
		fresh []opened
		errs  []error
	)
	for _, t := range toOpen {
		q, err := collect.OpenQueueReader(t, s.opts.NoBPF)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fresh = append(fresh, opened{t, q, q.Inode()})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Errors += uint64(len(errs))
	if s.closed {
		for _, o := range fresh {
			o.q.Close()
		}
		return errors.Join(errs...)
	}
	for _, o := range fresh {
		want[o.inode] = true
		if o.t.Path == "" {
			s.selfInode = o.inode
		}
		if _, ok := s.nss[o.inode]; ok {
			o.q.Close() // opened twice by racing callers
			continue
		}
		s.nss[o.inode] = &namespace{name: o.t.Name, q: o.q, peaks: make(map[uint32]peak)}
	}
	for inode, ns := range s.nss {
		if !want[inode] {
			ns.q.Close()
			delete(s.nss, inode)
		}
	}
	s.stats.Namespaces = len(s.nss)
	return errors.Join(errs...)
}

// Sample reads every watched namespace's accept queues once. Run calls it
// every interval; a caller that keeps its own clock may call it instead.
func (s *Sampler) Sample() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	var errs []error
	listeners := 0
	for inode, ns := range s.nss {
		before := ns.q.Skipped()
		n, err := ns.sample()
		listeners += n
		s.stats.Quiet += ns.q.Skipped() - before
		if err != nil {
			s.stats.Errors++
			errs = append(errs, fmt.Errorf("sampling namespace %s: %w", ns.name, err))
		}
		if s.opts.Logger != nil && ns.failing != (err != nil) {
			if err != nil {
				s.opts.Logger.Warn("sampling accept queues failed; peaks of this namespace fall back to the value at scrape", "netns", ns.name, "inode", inode, "err", err)
			} else {
				s.opts.Logger.Info("sampling accept queues works again", "netns", ns.name, "inode", inode)
			}
		}
		ns.failing = err != nil
	}
	s.stats.Samples++
	s.stats.Busy += time.Since(start)
	s.stats.Listeners = listeners
	return errors.Join(errs...)
}

// sample records one read; it returns how many listeners it saw.
func (ns *namespace) sample() (int, error) {
	ns.round++
	seen := 0
	n, complete, err := ns.q.Read(func(inode, q uint32) {
		p, ok := ns.peaks[inode]
		if !ok || p.round != ns.round {
			seen++
		}
		p.max = max(p.max, q)
		p.round = ns.round
		ns.peaks[inode] = p
	})
	if !complete {
		// Only listeners with a queue were passed: the others' is 0,
		// which no peak needs, and closed listeners go at the next Take.
		return n, err
	}
	// Forget closed listeners so the map stays as large as the listen
	// table even when nobody calls Take.
	if err == nil && len(ns.peaks) > seen {
		for inode, p := range ns.peaks {
			if p.round != ns.round {
				delete(ns.peaks, inode)
			}
		}
	}
	return seen, err
}

// Take returns the peak accept queue of every listener since the previous
// Take (or since it was first seen) and starts a new window. A listener
// absent from the result was not sampled in the window, or sampled with
// an empty queue: use its current value.
func (s *Sampler) Take() map[Key]uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ns := range s.nss {
		n += len(ns.peaks)
	}
	out := make(map[Key]uint32, n)
	for inode, ns := range s.nss {
		for sock, p := range ns.peaks {
			out[Key{Netns: inode, Inode: sock}] = p.max
		}
		ns.peaks = make(map[uint32]peak, len(ns.peaks))
	}
	return out
}

// Stats returns what sampling has cost so far.
func (s *Sampler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run samples every interval until ctx ends, then closes the sampler.
func (s *Sampler) Run(ctx context.Context) {
	defer s.Close()
	var resolve <-chan time.Time
	if s.opts.Resolve != nil {
		s.resolve()
		t := time.NewTicker(s.opts.ResolveEvery)
		defer t.Stop()
		resolve = t.C
	}
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.Sample() // failures are counted, logged and visible in Stats
		case <-resolve:
			s.resolve()
		}
	}
}

func (s *Sampler) resolve() {
	targets, err := s.opts.Resolve()
	if errors.Is(err, collect.ErrBadSpec) {
		// A --netns namespace that resolved before went away: the
		// collection reports it once, as that namespace; counting and
		// logging it here at every round would say it twice, and again.
		// The sockets already open keep sampling what they can.
		return
	}
	if err != nil {
		s.mu.Lock()
		s.stats.Errors++
		s.mu.Unlock()
		if s.opts.Logger != nil {
			s.opts.Logger.Warn("listing namespaces to sample failed; still sampling the previous ones", "err", err)
		}
		return
	}
	// Counted in Stats; debug only, as a namespace that cannot be opened
	// would otherwise repeat every round.
	if err := s.SetTargets(targets); err != nil && s.opts.Logger != nil {
		s.opts.Logger.Debug("some namespaces cannot be sampled", "err", err)
	}
}

// Close closes every socket; the sampler watches nothing afterwards.
func (s *Sampler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for inode, ns := range s.nss {
		ns.q.Close()
		delete(s.nss, inode)
	}
	s.closed = true
	s.stats.Namespaces = 0
}
