// Package report turns a recording into what people read after an
// incident: one self-contained HTML page with plots (html.go), and the
// OpenMetrics text that backfills Prometheus (openmetrics.go). It reads
// frames through internal/replay, the source the other views use.
package report

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/replay"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// MaxListeners is how many listeners a report plots: those that mattered
// most. The summary table lists them too.
const MaxListeners = 12

// maxNamespaces bounds the namespaces whose counter rates are plotted.
const maxNamespaces = 8

// Report is everything the HTML page shows; its JSON is embedded in the
// page for the plots (and read back by tests).
type Report struct {
	Title     string    `json:"title"`
	Host      string    `json:"host,omitempty"`
	Program   string    `json:"program,omitempty"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Frames    int       `json:"frames"`
	Listeners []Series  `json:"listeners"`
	// Namespaces are counter rates of the namespaces that mattered.
	Namespaces []NamespaceSeries `json:"namespaces"`
	// Findings are doctor's, over the whole window.
	Findings []doctor.Finding `json:"findings"`
	// Marks are the warning and critical findings of each stretch of the
	// window, for the timeline.
	Marks   []Mark   `json:"marks"`
	BPF     bool     `json:"bpf"`
	Damaged []string `json:"damaged,omitempty"`
}

// Series is one listener over time. Values are per frame; null where the
// listener did not exist or the value is absent.
type Series struct {
	Netns     uint64             `json:"netns"`
	Inode     uint32             `json:"inode"`
	Namespace string             `json:"namespace"`
	Listener  string             `json:"listener"`
	Processes []snapshot.Process `json:"processes"`
	Summary   Summary            `json:"summary"`

	Time        []float64  `json:"t"` // unix seconds
	AcceptQueue []*float64 `json:"accept_queue"`
	Peak        []*float64 `json:"accept_queue_peak"`
	Backlog     []*float64 `json:"backlog"`
	SynQueue    []*float64 `json:"syn_queue"`
	DropsPerSec []*float64 `json:"drops_per_second"`
	// Events are eBPF drop events per second, by stage.
	Events map[string][]*float64 `json:"events,omitempty"`
	// WaitP50 etc. are accept-queue wait percentiles of the connections
	// accepted in each interval, in milliseconds.
	WaitP50 []*float64 `json:"wait_p50_ms,omitempty"`
	WaitP90 []*float64 `json:"wait_p90_ms,omitempty"`
	WaitP99 []*float64 `json:"wait_p99_ms,omitempty"`
}

// Summary is one row of the table on top.
type Summary struct {
	MaxPeak        uint32            `json:"max_peak"`
	Backlog        uint32            `json:"backlog"`
	SecondsFull    float64           `json:"seconds_full"` // intervals whose peak passed the backlog
	FirstFull      *time.Time        `json:"first_full,omitempty"`
	MaxSynQueue    uint32            `json:"max_syn_queue"`
	Drops          *uint64           `json:"drops,omitempty"` // sk_drops moved in the window
	Events         map[string]uint64 `json:"events,omitempty"`
	AcceptWaitP99  *float64          `json:"accept_wait_p99_ms,omitempty"`
	score          float64
	lastDrops      *uint64
	firstDrops     *uint64
	droppedInFrame bool
}

// NamespaceSeries are the per-second rates of a namespace's TcpExt
// counters.
type NamespaceSeries struct {
	Inode uint64                `json:"inode"`
	Name  string                `json:"name"`
	Time  []float64             `json:"t"`
	Rates map[string][]*float64 `json:"rates"`
	total float64
}

// Mark is a finding of one stretch of the timeline.
type Mark struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Rule     string    `json:"rule"`
	Severity string    `json:"severity"`
	Listener string    `json:"listener,omitempty"`
	Summary  string    `json:"summary"`
}

// Build reads the window of src three times: to find the listeners that
// mattered, to plot them, and for doctor's findings.
func Build(src replay.Source) (*Report, error) {
	r := &Report{}
	scores := map[snapshot.ListenerKey]*Summary{}
	nsTotals := map[uint64]float64{}
	var prev *record.Frame
	dmg, err := src.Frames(func(f *record.Frame) error {
		if r.Frames == 0 {
			r.Since = f.Snapshot.TakenAt
			r.Host, r.Program, r.BPF = f.Header.Host, f.Header.Program, f.Header.BPF
		}
		r.Frames++
		r.Until = f.Snapshot.TakenAt
		d := f.Delta(prev)
		for _, l := range d.Listeners {
			s := scores[l.Key()]
			if s == nil {
				s = &Summary{firstDrops: l.Drops}
				scores[l.Key()] = s
			}
			s.observe(&l, d.Interval, f.Snapshot.TakenAt)
		}
		for _, ns := range d.Namespaces {
			for _, v := range ns.Rates {
				nsTotals[ns.Inode] += v
			}
		}
		if f.Trace != nil && prev != nil {
			for _, st := range replay.Since(f.Trace, prev.Trace) {
				for k, s := range scores {
					if l := f.Snapshot.Listener(k); l != nil && sameListener(l, st.ListenerID) {
						s.score += float64(st.Dropped())
					}
				}
			}
		}
		prev = f
		return nil
	})
	for _, d := range dmg {
		r.Damaged = append(r.Damaged, d.String())
	}
	if err != nil {
		return nil, err
	}
	if r.Frames == 0 {
		return nil, replay.ErrEmpty
	}
	keys := make([]snapshot.ListenerKey, 0, len(scores))
	for k, s := range scores {
		if s.score > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b snapshot.ListenerKey) int {
		return cmp.Or(cmp.Compare(scores[b].score, scores[a].score), cmp.Compare(a.Netns, b.Netns), cmp.Compare(a.Inode, b.Inode))
	})
	if len(keys) > MaxListeners {
		keys = keys[:MaxListeners]
	}
	if err := r.plot(src, keys, scores, nsTotals); err != nil {
		return nil, err
	}
	obs, _, err := src.Observe()
	if err == nil {
		r.Findings = doctor.Diagnose(obs)
	}
	return r, nil
}

func sameListener(l *snapshot.Listener, id trace.ListenerID) bool {
	return l.Netns == id.Netns && l.Address == id.Listener.Addr() && l.Port == id.Listener.Port() && uint64(l.Inode) == id.Inode
}

// observe folds one frame of a listener into its summary and its score:
// how much it mattered (overflow, drops, SYN queue, fill).
func (s *Summary) observe(l *snapshot.ListenerDelta, interval float64, at time.Time) {
	s.MaxPeak = max(s.MaxPeak, l.AcceptQueuePeak)
	s.Backlog = l.Backlog
	s.MaxSynQueue = max(s.MaxSynQueue, l.SynQueueLen())
	if l.AcceptQueuePeak > l.Backlog {
		s.SecondsFull += interval
		if s.FirstFull == nil {
			t := at
			s.FirstFull = &t
		}
		s.score += 1000
	}
	if l.DropsPerSecond != nil && *l.DropsPerSecond > 0 {
		s.score += 100 * *l.DropsPerSecond * interval
	}
	s.score += float64(l.SynQueueLen())
	if l.Backlog > 0 {
		s.score += float64(l.AcceptQueuePeak) / float64(l.Backlog)
	}
	s.lastDrops = l.Drops
}

func val(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// plot fills the series of the chosen listeners and namespaces, and the
// findings of each stretch of the window.
func (r *Report) plot(src replay.Source, keys []snapshot.ListenerKey, scores map[snapshot.ListenerKey]*Summary, nsTotals map[uint64]float64) error {
	index := map[snapshot.ListenerKey]int{}
	r.Listeners = make([]Series, len(keys))
	for i, k := range keys {
		index[k] = i
		r.Listeners[i] = Series{Netns: k.Netns, Inode: k.Inode, Summary: *scores[k]}
	}
	nsIndex := map[uint64]int{}
	var nsKeys []uint64
	for inode, total := range nsTotals {
		if total > 0 {
			nsKeys = append(nsKeys, inode)
		}
	}
	for _, k := range keys {
		if !slices.Contains(nsKeys, k.Netns) {
			nsKeys = append(nsKeys, k.Netns)
		}
	}
	slices.SortFunc(nsKeys, func(a, b uint64) int { return cmp.Or(cmp.Compare(nsTotals[b], nsTotals[a]), cmp.Compare(a, b)) })
	if len(nsKeys) > maxNamespaces {
		nsKeys = nsKeys[:maxNamespaces]
	}
	r.Namespaces = make([]NamespaceSeries, len(nsKeys))
	for i, inode := range nsKeys {
		nsIndex[inode] = i
		r.Namespaces[i] = NamespaceSeries{Inode: inode, Rates: map[string][]*float64{}}
	}

	span := r.Until.Sub(r.Since)
	stretch := max(10*time.Second, span/40)
	var (
		prev    *record.Frame
		seg     *doctor.Observation
		segFrom *record.Frame
		segLast *record.Frame
	)
	closeSeg := func() {
		if seg == nil || segLast == nil {
			return
		}
		seg.Last = segLast.Snapshot
		seg.Duration = segLast.Snapshot.TakenAt.Sub(segFrom.Snapshot.TakenAt)
		if segLast.Trace != nil {
			seg.Trace = replay.Since(segLast.Trace, segFrom.Trace)
		}
		for _, f := range doctor.Diagnose(*seg) {
			if doctor.Trouble([]doctor.Finding{f}) {
				r.Marks = append(r.Marks, Mark{From: segFrom.Snapshot.TakenAt, To: segLast.Snapshot.TakenAt,
					Rule: f.Rule, Severity: f.Severity, Listener: f.Listener, Summary: f.Summary})
			}
		}
	}
	_, err := src.Frames(func(f *record.Frame) error {
		t := float64(f.Snapshot.TakenAt.UnixNano()) / 1e9
		d := f.Delta(prev)
		present := make([]bool, len(r.Listeners))
		var waits map[trace.ListenerID]trace.ListenerStats
		if f.Trace != nil && prev != nil {
			waits = map[trace.ListenerID]trace.ListenerStats{}
			for _, st := range replay.Since(f.Trace, prev.Trace) {
				waits[st.ListenerID] = st
			}
		}
		for _, l := range d.Listeners {
			i, ok := index[l.Key()]
			if !ok {
				continue
			}
			present[i] = true
			s := &r.Listeners[i]
			s.Namespace = nameOf(f.Snapshot, l.Netns)
			s.Listener = l.Local()
			if l.Processes != nil {
				s.Processes = l.Processes
			}
			s.Time = append(s.Time, t)
			s.AcceptQueue = append(s.AcceptQueue, val(float64(l.AcceptQueue)))
			s.Peak = append(s.Peak, val(float64(l.AcceptQueuePeak)))
			s.Backlog = append(s.Backlog, val(float64(l.Backlog)))
			if l.SynQueue != nil {
				s.SynQueue = append(s.SynQueue, val(float64(*l.SynQueue)))
			} else {
				s.SynQueue = append(s.SynQueue, nil) // a SO_REUSEPORT member read with sock_diag
			}
			s.DropsPerSec = append(s.DropsPerSec, l.DropsPerSecond)
			if r.BPF {
				s.traced(waits, &l.Listener, d.Interval, len(s.Time))
			}
		}
		for i := range r.Listeners {
			if !present[i] {
				r.Listeners[i].gap(t, r.BPF)
			}
		}
		for _, ns := range d.Namespaces {
			i, ok := nsIndex[ns.Inode]
			if !ok {
				continue
			}
			n := &r.Namespaces[i]
			n.Name = ns.Name
			n.Time = append(n.Time, t)
			for _, c := range ns.Counters.Named() {
				rate, ok := ns.Rates[c.Name]
				if _, seen := n.Rates[c.Name]; !seen {
					n.Rates[c.Name] = make([]*float64, len(n.Time)-1)
				}
				if ok {
					n.Rates[c.Name] = append(n.Rates[c.Name], val(rate))
				} else {
					n.Rates[c.Name] = append(n.Rates[c.Name], nil)
				}
			}
			for name, v := range n.Rates {
				if len(v) < len(n.Time) {
					n.Rates[name] = append(v, nil)
				}
			}
		}
		// Doctor over stretches, each starting where the last ended.
		if seg == nil || f.Snapshot.TakenAt.Sub(segFrom.Snapshot.TakenAt) > stretch {
			closeSeg()
			o := doctor.NewObservation(f.Snapshot)
			seg, segFrom, segLast = &o, f, nil
		} else {
			seg.Add(f.Snapshot, f.Peaks)
			segLast = f
		}
		prev = f
		return nil
	})
	closeSeg()
	for i := range r.Listeners {
		s := &r.Listeners[i]
		if s.Summary.firstDrops != nil && s.Summary.lastDrops != nil && *s.Summary.lastDrops >= *s.Summary.firstDrops {
			n := *s.Summary.lastDrops - *s.Summary.firstDrops
			s.Summary.Drops = &n
		}
	}
	return err
}

func nameOf(s *snapshot.Snapshot, inode uint64) string {
	if ns := s.Namespace(inode); ns != nil {
		return ns.Name
	}
	return ""
}

// traced appends the eBPF values of one frame: events per second by stage
// and the wait percentiles of the interval.
func (s *Series) traced(waits map[trace.ListenerID]trace.ListenerStats, l *snapshot.Listener, interval float64, n int) {
	if s.Events == nil {
		s.Events = map[string][]*float64{}
		for _, st := range trace.Stages {
			s.Events[st.String()] = make([]*float64, n-1)
		}
		s.WaitP50, s.WaitP90, s.WaitP99 = make([]*float64, n-1), make([]*float64, n-1), make([]*float64, n-1)
	}
	var st *trace.ListenerStats
	for id, w := range waits {
		if sameListener(l, id) {
			st = &w
			break
		}
	}
	for _, stage := range trace.Stages {
		var v *float64
		if st != nil && interval > 0 {
			v = val(float64(st.Drops[stage]) / interval)
			if s.Summary.Events == nil {
				s.Summary.Events = map[string]uint64{}
			}
			if st.Drops[stage] > 0 {
				s.Summary.Events[stage.String()] += st.Drops[stage]
			}
		}
		s.Events[stage.String()] = append(s.Events[stage.String()], v)
	}
	var p50, p90, p99 *float64
	if st != nil && st.AcceptWait.Count > 0 {
		ms := func(q float64) *float64 { return val(float64(st.AcceptWait.Quantile(q)) / 1e6) }
		p50, p90, p99 = ms(0.5), ms(0.9), ms(0.99)
		if s.Summary.AcceptWaitP99 == nil || *p99 > *s.Summary.AcceptWaitP99 {
			s.Summary.AcceptWaitP99 = p99
		}
	}
	s.WaitP50, s.WaitP90, s.WaitP99 = append(s.WaitP50, p50), append(s.WaitP90, p90), append(s.WaitP99, p99)
}

// gap appends a frame where the listener did not exist.
func (s *Series) gap(t float64, bpf bool) {
	s.Time = append(s.Time, t)
	s.AcceptQueue, s.Peak, s.Backlog = append(s.AcceptQueue, nil), append(s.Peak, nil), append(s.Backlog, nil)
	s.SynQueue, s.DropsPerSec = append(s.SynQueue, nil), append(s.DropsPerSec, nil)
	if bpf && s.Events != nil {
		for k, v := range s.Events {
			s.Events[k] = append(v, nil)
		}
		s.WaitP50, s.WaitP90, s.WaitP99 = append(s.WaitP50, nil), append(s.WaitP90, nil), append(s.WaitP99, nil)
	}
}
