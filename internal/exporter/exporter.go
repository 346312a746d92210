// Package exporter is backlog's Prometheus collector: at each scrape it takes
// one snapshot with collect, adds the sampler's accept-queue peaks and turns
// listeners, namespaces and its own health into metrics (docs/metrics.md).
package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Options configure an Exporter.
type Options struct {
	// Resolve returns what to collect; it runs at every collection so that
	// namespaces that appear or vanish are followed. The string is a
	// warning to log once, such as a narrowing for lack of privilege.
	Resolve func() (collect.Options, string, error)
	// Sampler supplies the peaks between scrapes and is told the
	// namespaces of each collection. Nil: the peak is the value at scrape.
	Sampler *sampler.Sampler
	// Note is the note of the Resolve already logged at start, so that
	// the first collection does not log it again.
	Note string
	// MaxListeners caps the listener series, fullest first; 0: no cap.
	MaxListeners int
	// OwnersMaxAge is how long owning processes are remembered while no
	// new listener appears (collect.OwnerCache); DefaultOwnersMaxAge when
	// zero.
	OwnersMaxAge time.Duration
	Logger       *slog.Logger

	collect func(context.Context, collect.Options) (*snapshot.Snapshot, error) // tests
}

// DefaultOwnersMaxAge bounds how stale a process label can be: walking
// /proc/*/fd at every scrape would cost more than the rest of it together.
const DefaultOwnersMaxAge = time.Minute

// Exporter is a prometheus.Collector. Concurrent Collect calls share one
// collection, so there is never more than one at a time.
type Exporter struct {
	opts   Options
	flight flight[*result]
	owners *collect.OwnerCache

	// Owned by the collection under way (flight runs one at a time).
	errors      map[string]uint64
	omitted     uint64
	collections uint64
	lastGood    *collect.Options
	lastNote    string // Resolve's note, logged when it changes
	lastHidden  string // hiddenKey of the last collection
	failing     map[failure]bool

	active, maxActive atomic.Int32 // collections under way, for tests

	// texts are the label texts of the last collection's series, reused
	// by the next one for the series it shares with it (labelTexts).
	texts map[uint32]*seriesText
	segs  segmentCache

	// names are the namespace names of the last collection, by inode
	// (NetnsName).
	names atomic.Pointer[map[uint64]string]
}

// NetnsName is the name the last collection gave the namespace with this
// inode, "" when it read none such: serve --bpf's trace series take it, so
// that a namespace is named alike on every series, also one created after
// serve started. Gather the exporter before them (Handler's order).
func (e *Exporter) NetnsName(inode uint64) string {
	if m := e.names.Load(); m != nil {
		return (*m)[inode]
	}
	return ""
}

// failure is one thing that failed, for logging when it starts and stops.
type failure struct{ source, netns string }

// result is one collection, ready to be turned into metrics.
type result struct {
	listeners   []series
	namespaces  []snapshot.Namespace
	source      string // Snapshot.Source
	seen        int
	duration    time.Duration
	errors      map[string]uint64
	omitted     uint64
	collections uint64
	sampler     *sampler.Stats
	// small are the families without the five per-listener ones, built
	// at each collection; all of them are built once asked for (all).
	small   []*dto.MetricFamily
	allOnce sync.Once
	full    []*dto.MetricFamily
	// The per-listener families compressed, made on the first gzip
	// scrape of the collection (segments).
	segCache *segmentCache
	segOnce  sync.Once
	segs     map[*metric][]*segment
}

// all returns every family of the collection, built on first use: the
// text format writes the per-listener families without them (text.go);
// Collect, Gather and other formats need them. Shared: read only.
func (r *result) all() []*dto.MetricFamily {
	r.allOnce.Do(func() { r.full = r.build() })
	return r.full
}

// series is one listener series: one socket.
type series struct {
	key                                  seriesKey
	text                                 *seriesText
	workload                             *snapshot.Workload
	address, port, family, inode         string
	acceptQueue, peak, backlog, synQueue uint32
	drops                                uint64
	// hasDrops, hasSyn: the kernel reported them (a SO_REUSEPORT
	// member's own SYN queue is unknown with sock_diag).
	hasDrops, hasSyn bool
}

type seriesKey struct {
	netns   string
	address netip.Addr
	port    uint16
	path    string // UNIX listeners
	process string
	// The workload's labels: Kubernetes namespace, pod, container.
	namespace, pod, container string
	// inode is the socket's: it tells apart SO_REUSEPORT members, which
	// share every other label.
	inode uint32
}

// New returns an exporter; register it with a prometheus.Registry.
func New(opts Options) *Exporter {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.collect == nil {
		opts.collect = collect.Collect
	}
	if opts.OwnersMaxAge <= 0 {
		opts.OwnersMaxAge = DefaultOwnersMaxAge
	}
	e := &Exporter{opts: opts, owners: &collect.OwnerCache{MaxAge: opts.OwnersMaxAge},
		errors: make(map[string]uint64), failing: make(map[failure]bool), lastNote: opts.Note,
		texts: make(map[uint32]*seriesText)}
	for _, s := range sources {
		e.errors[s] = 0 // every source from the start, so rate() works at once
	}
	return e
}

// Describe sends every metric's description.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range allMetrics {
		ch <- m.desc
	}
}

// Collect runs a collection, or joins the one under way, and sends it.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	for _, f := range e.flight.do(e.collectOnce).all() {
		desc := metricByName[f.GetName()].desc
		for _, m := range f.Metric {
			ch <- wrapped{desc, m}
		}
	}
}

// Gather runs a collection, or joins the one under way, and returns its
// metric families as Collect sends them, without a registry's per-sample
// checks: serve's fast path (Handler). The families are shared: read only.
func (e *Exporter) Gather() ([]*dto.MetricFamily, error) {
	return e.flight.do(e.collectOnce).all(), nil
}

// collectOnce takes one snapshot and the peaks since the previous one.
func (e *Exporter) collectOnce() *result {
	if n := e.active.Add(1); n > e.maxActive.Load() {
		e.maxActive.Store(n)
	}
	defer e.active.Add(-1)
	start := time.Now()
	e.collections++
	failed := make(map[failure]error)
	fail := func(source, netns string, err error) {
		e.errors[source]++
		failed[failure{source, netns}] = err
	}

	opts, note, err := e.opts.Resolve()
	switch {
	case errors.Is(err, collect.ErrBadSpec) && e.lastGood != nil:
		// A --netns namespace that resolved before went away: reading the
		// last good targets reports it once, as the namespace that
		// vanished (source namespace), not also as a listing error.
		opts = *e.lastGood
	case err != nil && e.lastGood != nil:
		fail(SourceNetns, "", err)
		opts = *e.lastGood // keep reading the namespaces known to exist
	case err != nil:
		fail(SourceNetns, "", err)
		opts = collect.Options{} // this process's own namespace
	default:
		e.lastGood = &opts
	}
	// How the default was narrowed (privilege, the caller's namespace) is
	// a fact of the deployment, not a failure: logged when it changes.
	e.logOnce(&e.lastNote, note, func() { e.opts.Logger.Warn(note) })
	if e.opts.Sampler != nil {
		// Its failures are counted in its Stats (source sampler).
		if err := e.opts.Sampler.SetTargets(opts.Targets); err != nil {
			failed[failure{SourceSampler, ""}] = err
		}
	}

	if opts.Owners == nil {
		opts.Owners = e.owners
	}
	snap, err := e.opts.collect(context.Background(), opts)
	var peaks map[sampler.Key]uint32
	if e.opts.Sampler != nil {
		peaks = e.opts.Sampler.Take()
	}
	r := &result{segCache: &e.segs}
	if err != nil {
		for range max(1, len(opts.Targets)) {
			fail(SourceNamespace, "", err)
		}
	} else {
		for _, ns := range snap.Namespaces {
			if ns.Error == "" {
				continue
			}
			err := textError(ns.Error)
			if !collect.PartlyRead(ns) {
				fail(SourceNamespace, ns.Name, err)
				continue
			}
			counters := len(ns.Counters.Named()) > 0
			if !counters {
				fail(SourceNetstat, ns.Name, err)
			}
			if counters || len(ns.Sysctls.Named()) == 0 {
				fail(SourceSysctl, ns.Name, err)
			}
		}
		for _, w := range snap.Warnings {
			if collect.UnixUnknown(w) {
				fail(SourceUnix, "", textError(w))
			} else {
				fail(SourceOwners, "", textError(w))
			}
		}
		// Processes the kernel refuses to inspect do so at every scrape:
		// an unchanging fact, logged when the set changes, never an error
		// (it would keep BacklogExporterErrors firing).
		e.logOnce(&e.lastHidden, hiddenKey(snap.Hidden), func() {
			e.opts.Logger.Warn("some processes cannot be inspected; not a scrape error, logged again only when this changes",
				"hidden", collect.DescribeHidden(snap.Hidden, snap.Listeners))
		})
		r.namespaces = snap.Namespaces
		r.source = snap.Source
		names := make(map[uint64]string, len(snap.Namespaces))
		for _, ns := range snap.Namespaces {
			names[ns.Inode] = ns.Name
		}
		e.names.Store(&names)
		r.listeners = buildSeries(snap, peaks)
	}
	r.seen = len(r.listeners)
	if m := e.opts.MaxListeners; m > 0 && len(r.listeners) > m {
		e.omitted += uint64(len(r.listeners) - m)
		r.listeners = r.listeners[:m] // collect sorts fullest first
	}
	known := labelTexts(r.listeners, e.texts, e.collections)
	sortByLabels(r.listeners, known)
	e.logChanges(failed)

	r.duration = time.Since(start)
	r.errors = make(map[string]uint64, len(e.errors))
	for k, v := range e.errors {
		r.errors[k] = v
	}
	if e.opts.Sampler != nil {
		st := e.opts.Sampler.Stats()
		r.sampler = &st
		r.errors[SourceSampler] = st.Errors
	}
	r.omitted, r.collections = e.omitted, e.collections
	r.small = r.buildFamilies(false)
	return r
}

// logOnce calls log when key differs from *last and is not empty, and
// remembers key.
func (e *Exporter) logOnce(last *string, key string, log func()) {
	if key != *last && key != "" {
		log()
	}
	*last = key
}

// hiddenKey identifies a set of refused processes and what each hides.
func hiddenKey(hs []snapshot.Hidden) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%d:%s:%t:%t;", h.PID, h.Errno, h.Netns, h.Owners)
	}
	return b.String()
}

// textError is a message kept as an error for the log.
type textError string

func (e textError) Error() string { return string(e) }

// logChanges logs a failure when it starts and when it stops, not at every
// scrape.
func (e *Exporter) logChanges(now map[failure]error) {
	for f, err := range now {
		if !e.failing[f] {
			e.opts.Logger.Warn("collection failed; the rest of the scrape is served", "error_source", f.source, "netns", f.netns, "err", err)
		}
	}
	for f := range e.failing {
		if _, ok := now[f]; !ok {
			e.opts.Logger.Info("collection works again", "error_source", f.source, "netns", f.netns)
		}
	}
	clear(e.failing)
	for f := range now {
		e.failing[f] = true
	}
}

// buildSeries turns listeners into series, in the snapshot's order (fullest
// first), one per socket: the socket's inode is a label, so SO_REUSEPORT
// members (one socket per nginx worker, each with its own queues, drops
// and owner) are series of their own, summed by the rules and the
// dashboard where they mean the port. Two namespaces given the same name
// could still collide; such sockets become one series, the largest queue
// and peak, the smallest backlog (a fill ratio that errs toward
// alerting), the sums of SYN queues and drops.
func buildSeries(snap *snapshot.Snapshot, peaks map[sampler.Key]uint32) []series {
	names := make(map[uint64]string, len(snap.Namespaces))
	for _, ns := range snap.Namespaces {
		names[ns.Inode] = ns.Name
	}
	out := make([]series, 0, len(snap.Listeners))
	// Series by socket inode, which tells them apart but for the same
	// socket read twice; by their whole key only when an inode repeats.
	byInode := make(map[uint32]int, len(snap.Listeners))
	var byKey map[seriesKey]int
	for i := range snap.Listeners {
		l := &snap.Listeners[i]
		s := series{
			key:         seriesKey{netns: names[l.Netns], address: l.Address, port: l.Port, path: l.Path, inode: l.Inode},
			acceptQueue: l.AcceptQueue,
			peak:        max(l.AcceptQueue, peaks[sampler.Key{Netns: l.Netns, Inode: l.Inode}]),
			backlog:     l.Backlog,
		}
		if l.SynQueue != nil {
			s.synQueue, s.hasSyn = *l.SynQueue, true
		}
		if len(l.Processes) > 0 {
			s.key.process = l.Processes[0].Comm
		}
		if w := l.Workload; w != nil {
			s.workload = w
			s.key.namespace, s.key.pod, s.key.container = w.Namespace, w.Pod, w.Container
		}
		if l.Drops != nil {
			s.drops, s.hasDrops = *l.Drops, true
		}
		j, ok := byInode[l.Inode]
		if ok && out[j].key != s.key {
			j, ok = byKey[s.key]
		}
		if !ok {
			s.family = l.Family // its labels' strings: labelTexts
			if _, taken := byInode[l.Inode]; !taken {
				byInode[l.Inode] = len(out)
			} else {
				if byKey == nil {
					byKey = make(map[seriesKey]int)
				}
				byKey[s.key] = len(out)
			}
			out = append(out, s)
			continue
		}
		m := &out[j]
		m.acceptQueue = max(m.acceptQueue, s.acceptQueue)
		m.peak = max(m.peak, s.peak)
		m.backlog = min(m.backlog, s.backlog)
		m.synQueue += s.synQueue
		m.drops += s.drops
		m.hasDrops = m.hasDrops || s.hasDrops
		m.hasSyn = m.hasSyn && s.hasSyn
	}
	return out
}
