package record

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// DefaultKeyEvery is how many frames an Encoder writes between key frames:
// five minutes at one frame a second. A reader that meets damage resumes at
// the next key frame.
const DefaultKeyEvery = 300

// compressOver is the payload size from which a record is deflated; smaller
// ones (an idle second) would grow.
const compressOver = 512

// wireFrame is the JSON payload of key and delta frames. A key frame
// carries everything; a delta frame only what changed since the previous
// frame (docs/record.md).
type wireFrame struct {
	TakenAt  time.Time `json:"t"`
	Warnings *[]string `json:"warnings,omitempty"`
	// Snapshot holds the snapshot's other top-level keys, when they
	// changed, so a key added to the model is carried too.
	Snapshot json.RawMessage `json:"snapshot,omitempty"`
	// NSOrder lists the namespaces by inode, when the list changed.
	NSOrder []uint64 `json:"ns_order,omitempty"`
	// Namespaces are the whole objects of namespaces that changed.
	Namespaces []json.RawMessage `json:"ns,omitempty"`
	// Listeners are patches: "netns" and "inode" name the listener, the
	// other keys are fields that changed, "-" lists fields now absent.
	Listeners []json.RawMessage `json:"l,omitempty"`
	Gone      [][2]uint64       `json:"l_gone,omitempty"`
	// Trace entries are whole, for listeners whose tally changed.
	Trace     []json.RawMessage `json:"trace,omitempty"`
	TraceGone []traceID         `json:"trace_gone,omitempty"`
}

// wireListener is a listener as recorded: the snapshot model's JSON (so new
// fields of the model are carried without a format change) plus its peak.
type wireListener struct {
	snapshot.Listener
	Peak uint32 `json:"accept_queue_peak"`
}

type traceID struct {
	Netns    uint64         `json:"netns"`
	Listener netip.AddrPort `json:"listener"`
	// Inode tells SO_REUSEPORT members apart (0: member unknown).
	Inode uint64 `json:"inode,omitempty"`
}

// wireTrace is a trace.ListenerStats with its histogram's slots, which the
// trace package's own JSON leaves out.
type wireTrace struct {
	traceID
	Namespace string                 `json:"namespace,omitempty"`
	Processes []snapshot.Process     `json:"processes"`
	Workload  *snapshot.Workload     `json:"workload,omitempty"`
	Drops     map[trace.Stage]uint64 `json:"drops,omitempty"`
	// Slots are [slot, count] pairs of the non-empty accept-wait slots.
	Slots [][2]uint64 `json:"wait_slots,omitempty"`
	Count uint64      `json:"wait_count,omitempty"`
	Sum   int64       `json:"wait_sum_ns,omitempty"`
	Max   int64       `json:"wait_max_ns,omitempty"`
	// RequestedBacklog is listen(2)'s argument when the trace saw it.
	RequestedBacklog *int64 `json:"requested_backlog,omitempty"`
}

// Encoder turns frames into records, each frame a delta against the one
// before. It is not safe for concurrent use.
type Encoder struct {
	// KeyEvery is the number of frames between key frames;
	// DefaultKeyEvery when zero.
	KeyEvery int

	sinceKey int
	key      bool // next frame is a key frame
	warnings []string
	rest     []byte
	nsOrder  []uint64
	ns       map[uint64][]byte
	ls       map[snapshot.ListenerKey]*encListener
	tr       map[traceID][]byte

	fw   *flate.Writer
	zbuf bytes.Buffer
}

type encListener struct {
	whole  []byte
	fields map[string]json.RawMessage
	seen   bool
}

// Header returns the framed header record; the next frame is a key frame,
// so that a file (or a restart within one) can be read from its header on.
func (e *Encoder) Header(h Header) ([]byte, error) {
	h.Format = Format
	p, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	e.key = true
	return appendRecord(nil, kindHeader, 0, p), nil
}

// ForceKey makes the next frame a key frame.
func (e *Encoder) ForceKey() { e.key = true }

// Frame returns the framed record of f.
func (e *Encoder) Frame(f *Frame) ([]byte, error) {
	every := e.KeyEvery
	if every <= 0 {
		every = DefaultKeyEvery
	}
	key := e.key || e.ls == nil || e.sinceKey >= every
	if key {
		e.key, e.sinceKey = false, 0
		e.warnings, e.nsOrder, e.rest = nil, nil, nil
		e.ns = make(map[uint64][]byte)
		e.ls = make(map[snapshot.ListenerKey]*encListener)
		e.tr = make(map[traceID][]byte)
	}
	e.sinceKey++
	s := f.Snapshot
	w := wireFrame{TakenAt: s.TakenAt}
	if key || !slices.Equal(e.warnings, s.Warnings) {
		ws := slices.Clone(s.Warnings)
		if ws == nil {
			ws = []string{}
		}
		w.Warnings = &ws
		e.warnings = ws
	}
	rest, err := snapshotRest(s)
	if err != nil {
		return nil, err
	}
	if key || !bytes.Equal(rest, e.rest) {
		w.Snapshot, e.rest = rest, rest
	}
	order := make([]uint64, len(s.Namespaces))
	for i, ns := range s.Namespaces {
		order[i] = ns.Inode
		b, err := json.Marshal(ns)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(b, e.ns[ns.Inode]) {
			w.Namespaces = append(w.Namespaces, b)
			e.ns[ns.Inode] = b
		}
	}
	if key || !slices.Equal(order, e.nsOrder) {
		w.NSOrder = order
		if len(order) == 0 {
			w.NSOrder = []uint64{} // still written: "no namespaces"
		}
		for inode := range e.ns {
			if !slices.Contains(order, inode) {
				delete(e.ns, inode)
			}
		}
		e.nsOrder = order
	}
	for _, st := range e.ls {
		st.seen = false
	}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		k := l.Key()
		peak := max(f.Peaks[k], l.AcceptQueue)
		patch, err := e.listener(k, wireListener{*l, peak})
		if err != nil {
			return nil, err
		}
		if patch != nil {
			w.Listeners = append(w.Listeners, patch)
		}
	}
	for k, st := range e.ls {
		if !st.seen {
			w.Gone = append(w.Gone, [2]uint64{k.Netns, uint64(k.Inode)})
			delete(e.ls, k)
		}
	}
	slices.SortFunc(w.Gone, func(a, b [2]uint64) int { return cmpPair(a, b) })
	if err := e.trace(&w, f.Trace); err != nil {
		return nil, err
	}
	p, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	kind := uint8(kindDelta)
	if key {
		kind = kindKey
	}
	var flags uint8
	if len(p) > compressOver {
		if p, err = e.deflate(p); err != nil {
			return nil, err
		}
		flags = flagDeflate
	}
	if len(p) > MaxPayload {
		return nil, fmt.Errorf("a frame of %d bytes is over the %d limit of a record", len(p), MaxPayload)
	}
	return appendRecord(nil, kind, flags, p), nil
}

// snapshotRest is the JSON object of the snapshot's top-level keys other
// than those a frame records on its own.
func snapshotRest(s *snapshot.Snapshot) ([]byte, error) {
	c := *s
	c.Namespaces, c.Listeners, c.Warnings = nil, nil, nil
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, k := range []string{"taken_at", "namespaces", "listeners", "warnings"} {
		delete(m, k)
	}
	return json.Marshal(m)
}

func cmpPair(a, b [2]uint64) int {
	if a[0] != b[0] {
		return cmpU(a[0], b[0])
	}
	return cmpU(a[1], b[1])
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// listener returns the patch of one listener, nil when nothing changed.
func (e *Encoder) listener(k snapshot.ListenerKey, wl wireListener) (json.RawMessage, error) {
	whole, err := json.Marshal(wl)
	if err != nil {
		return nil, err
	}
	st := e.ls[k]
	if st != nil && bytes.Equal(st.whole, whole) {
		st.seen = true
		return nil, nil // the common case: an idle listener costs nothing
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(whole, &fields); err != nil {
		return nil, err
	}
	if st == nil {
		e.ls[k] = &encListener{whole: whole, fields: fields, seen: true}
		return whole, nil
	}
	patch := map[string]json.RawMessage{"netns": fields["netns"], "inode": fields["inode"]}
	var gone []string
	for name, v := range fields {
		if !bytes.Equal(st.fields[name], v) {
			patch[name] = v
		}
	}
	for name := range st.fields {
		if _, ok := fields[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		b, _ := json.Marshal(gone)
		patch["-"] = b
	}
	st.whole, st.fields, st.seen = whole, fields, true
	return json.Marshal(patch)
}

func (e *Encoder) trace(w *wireFrame, stats []trace.ListenerStats) error {
	seen := make(map[traceID]bool, len(stats))
	for i := range stats {
		wt := toWireTrace(&stats[i])
		b, err := json.Marshal(wt)
		if err != nil {
			return err
		}
		seen[wt.traceID] = true
		if !bytes.Equal(e.tr[wt.traceID], b) {
			w.Trace = append(w.Trace, b)
			e.tr[wt.traceID] = b
		}
	}
	for id := range e.tr {
		if !seen[id] {
			w.TraceGone = append(w.TraceGone, id)
			delete(e.tr, id)
		}
	}
	slices.SortFunc(w.TraceGone, func(a, b traceID) int {
		if a.Netns != b.Netns {
			return cmpU(a.Netns, b.Netns)
		}
		if c := a.Listener.Compare(b.Listener); c != 0 {
			return c
		}
		return cmpU(a.Inode, b.Inode)
	})
	return nil
}

func toWireTrace(s *trace.ListenerStats) wireTrace {
	wt := wireTrace{
		traceID:   traceID{s.Netns, s.Listener, s.Inode},
		Namespace: s.Namespace,
		Processes: s.Processes,
		Workload:  s.Workload,
		Count:     s.AcceptWait.Count,
		Sum:       int64(s.AcceptWait.Sum),
		Max:       int64(s.AcceptWait.Max),

		RequestedBacklog: s.RequestedBacklog,
	}
	if len(s.Drops) > 0 {
		wt.Drops = s.Drops // encoding/json writes maps in key order
	}
	for i, n := range s.AcceptWait.Slots {
		if n > 0 {
			wt.Slots = append(wt.Slots, [2]uint64{uint64(i), n})
		}
	}
	return wt
}

func (e *Encoder) deflate(p []byte) ([]byte, error) {
	e.zbuf.Reset()
	if e.fw == nil {
		fw, err := flate.NewWriter(&e.zbuf, flate.BestSpeed)
		if err != nil {
			return nil, err
		}
		e.fw = fw
	} else {
		e.fw.Reset(&e.zbuf)
	}
	if _, err := e.fw.Write(p); err != nil {
		return nil, err
	}
	if err := e.fw.Close(); err != nil {
		return nil, err
	}
	return slices.Clone(e.zbuf.Bytes()), nil
}
