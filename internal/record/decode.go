package record

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// maxInflated bounds a decompressed payload, so a crafted record cannot
// make the reader allocate without limit.
const maxInflated = 256 << 20

// Damage is a stretch of a recording that could not be read.
type Damage struct {
	File   string // set by Read
	Offset int64  // where it starts, in bytes from the start of the file
	Length int64  // how many bytes were skipped
	Torn   bool   // the file ends inside a record: the recorder stopped mid-write
	Reason string // what was wrong
}

func (d Damage) String() string {
	where := ""
	if d.File != "" {
		where = d.File + ": "
	}
	if d.Torn {
		return fmt.Sprintf("%storn tail at byte %d (%d bytes of an unfinished record skipped)", where, d.Offset, d.Length)
	}
	return fmt.Sprintf("%sdamaged bytes %d-%d skipped (%s)", where, d.Offset, d.Offset+d.Length, d.Reason)
}

// Decoder reads the frames of one recording held in memory. Damage never
// stops it: it skips to the next valid record and, for deltas, to the next
// key frame, and says what it skipped in Damaged.
type Decoder struct {
	b   []byte
	off int

	header  *Header
	valid   bool // the state is whole: a key frame was read and nothing lost since
	damaged []Damage

	warnings []string
	rest     json.RawMessage
	nsOrder  []uint64
	ns       map[uint64]snapshot.Namespace
	ls       map[snapshot.ListenerKey]*decListener
	tr       map[traceID]trace.ListenerStats
}

type decListener struct {
	fields map[string]json.RawMessage
	wl     wireListener
}

// NewDecoder returns a decoder of the recording b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Damaged lists what was skipped so far.
func (d *Decoder) Damaged() []Damage { return d.damaged }

// Next returns the next frame, or io.EOF after the last.
func (d *Decoder) Next() (*Frame, error) {
	for d.off < len(d.b) {
		rec, n, err := parseRecord(d.b[d.off:])
		if err != nil {
			d.skip(err)
			continue
		}
		start := d.off
		d.off += n
		f, err := d.apply(rec)
		if err != nil {
			// A valid checksum over a payload this reader cannot use: a
			// later format or a writer bug. Skip to the next key frame.
			d.damaged = append(d.damaged, Damage{Offset: int64(start), Length: int64(n), Reason: err.Error()})
			d.valid = false
			continue
		}
		if f != nil {
			return f, nil
		}
	}
	return nil, io.EOF
}

// skip records damage at d.off and moves to the next valid record.
func (d *Decoder) skip(err error) {
	start := d.off
	next := nextValid(d.b, start+1)
	if next < 0 {
		d.off = len(d.b)
		d.damaged = append(d.damaged, Damage{Offset: int64(start), Length: int64(d.off - start), Torn: true, Reason: err.Error()})
		return
	}
	d.off = next
	d.damaged = append(d.damaged, Damage{Offset: int64(start), Length: int64(d.off - start), Reason: err.Error()})
	d.valid = false
}

// apply folds one record into the state; it returns the frame it completes.
func (d *Decoder) apply(rec rawRecord) (*Frame, error) {
	p := rec.payload
	if rec.flags&flagDeflate != 0 {
		var err error
		if p, err = inflate(p); err != nil {
			return nil, err
		}
	}
	switch rec.kind {
	case kindHeader:
		var h Header
		if err := json.Unmarshal(p, &h); err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		if h.Format != Format {
			return nil, fmt.Errorf("header of format %d; this backlog reads format %d", h.Format, Format)
		}
		d.header, d.valid = &h, false
		return nil, nil
	case kindKey:
		if d.header == nil {
			return nil, errors.New("key frame before any header")
		}
		d.warnings, d.nsOrder, d.rest = nil, nil, nil
		d.ns = make(map[uint64]snapshot.Namespace)
		d.ls = make(map[snapshot.ListenerKey]*decListener)
		d.tr = make(map[traceID]trace.ListenerStats)
		d.valid = true
	case kindDelta:
		if !d.valid {
			return nil, nil // waiting for a key frame
		}
	default:
		return nil, fmt.Errorf("unknown record kind %d", rec.kind)
	}
	var w wireFrame
	if err := json.Unmarshal(p, &w); err != nil {
		d.valid = false
		return nil, fmt.Errorf("frame: %w", err)
	}
	if err := d.fold(&w); err != nil {
		d.valid = false
		return nil, err
	}
	return d.frame(w), nil
}

func inflate(p []byte) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(p))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("inflating: %w", err)
	}
	if len(out) > maxInflated {
		return nil, fmt.Errorf("inflated payload over %d bytes", maxInflated)
	}
	return out, nil
}

func (d *Decoder) fold(w *wireFrame) error {
	if w.Warnings != nil {
		d.warnings = *w.Warnings
	}
	if w.Snapshot != nil {
		var probe snapshot.Snapshot
		if err := json.Unmarshal(w.Snapshot, &probe); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		d.rest = w.Snapshot
	}
	for _, raw := range w.Namespaces {
		var ns snapshot.Namespace
		if err := json.Unmarshal(raw, &ns); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
		d.ns[ns.Inode] = ns
	}
	if w.NSOrder != nil {
		d.nsOrder = w.NSOrder
		for inode := range d.ns {
			if !slices.Contains(d.nsOrder, inode) {
				delete(d.ns, inode)
			}
		}
	}
	for _, inode := range d.nsOrder {
		if _, ok := d.ns[inode]; !ok {
			return fmt.Errorf("namespace %d listed but never recorded", inode)
		}
	}
	for _, g := range w.Gone {
		if g[1] > 1<<32-1 {
			return fmt.Errorf("listener inode %d out of range", g[1])
		}
		delete(d.ls, snapshot.ListenerKey{Netns: g[0], Inode: uint32(g[1])})
	}
	for _, raw := range w.Listeners {
		if err := d.patch(raw); err != nil {
			return err
		}
	}
	for _, id := range w.TraceGone {
		delete(d.tr, id)
	}
	for _, raw := range w.Trace {
		var wt wireTrace
		if err := json.Unmarshal(raw, &wt); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		s, err := fromWireTrace(&wt)
		if err != nil {
			return err
		}
		d.tr[wt.traceID] = s
	}
	return nil
}

// patch applies one listener patch.
func (d *Decoder) patch(raw json.RawMessage) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	var id struct {
		Netns *uint64 `json:"netns"`
		Inode *uint32 `json:"inode"`
	}
	if err := json.Unmarshal(raw, &id); err != nil || id.Netns == nil || id.Inode == nil {
		return fmt.Errorf("listener without netns and inode")
	}
	k := snapshot.ListenerKey{Netns: *id.Netns, Inode: *id.Inode}
	var gone []string
	if g, ok := fields["-"]; ok {
		if err := json.Unmarshal(g, &gone); err != nil {
			return fmt.Errorf("listener: absent fields: %w", err)
		}
		delete(fields, "-")
	}
	st := d.ls[k]
	if st == nil {
		st = &decListener{fields: map[string]json.RawMessage{}}
	}
	for name, v := range fields {
		st.fields[name] = v
	}
	for _, name := range gone {
		delete(st.fields, name)
	}
	whole, err := json.Marshal(st.fields)
	if err != nil {
		return err
	}
	var wl wireListener
	if err := json.Unmarshal(whole, &wl); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	st.wl = wl
	d.ls[k] = st
	return nil
}

func fromWireTrace(wt *wireTrace) (trace.ListenerStats, error) {
	s := trace.ListenerStats{
		ListenerID: trace.ListenerID{Netns: wt.Netns, Listener: wt.Listener, Inode: wt.Inode},
		Namespace:  wt.Namespace,
		Processes:  wt.Processes,
		Workload:   wt.Workload,
		Drops:      make(map[trace.Stage]uint64, len(wt.Drops)),

		RequestedBacklog: wt.RequestedBacklog,
	}
	for st, n := range wt.Drops {
		s.Drops[st] = n
	}
	h := &s.AcceptWait
	for _, sl := range wt.Slots {
		if sl[0] >= uint64(len(h.Slots)) {
			return s, fmt.Errorf("trace: accept-wait slot %d out of range", sl[0])
		}
		h.Slots[sl[0]] = sl[1]
	}
	h.Count = wt.Count
	h.Sum = durationNS(wt.Sum)
	h.Max = durationNS(wt.Max)
	return s, nil
}

// frame builds the frame the state now holds.
func (d *Decoder) frame(w wireFrame) *Frame {
	s := &snapshot.Snapshot{}
	if len(d.rest) > 0 {
		json.Unmarshal(d.rest, s) // checked when it was read
	}
	s.TakenAt, s.Warnings = w.TakenAt, slices.Clone(d.warnings)
	if len(s.Warnings) == 0 {
		s.Warnings = nil
	}
	s.Namespaces = make([]snapshot.Namespace, 0, len(d.nsOrder))
	for _, inode := range d.nsOrder {
		s.Namespaces = append(s.Namespaces, d.ns[inode])
	}
	s.Listeners = make([]snapshot.Listener, 0, len(d.ls))
	peaks := make(map[snapshot.ListenerKey]uint32, len(d.ls))
	for k, st := range d.ls {
		s.Listeners = append(s.Listeners, st.wl.Listener)
		peaks[k] = st.wl.Peak
	}
	// The collector orders listeners fullest first; that order is a total
	// one, so sorting again gives the recorded order back.
	snapshot.SortFullest(s.Listeners)
	f := &Frame{Snapshot: s, Peaks: peaks, Header: d.header}
	if d.header.BPF {
		f.Trace = make([]trace.ListenerStats, 0, len(d.tr))
		for _, st := range d.tr {
			f.Trace = append(f.Trace, st)
		}
		slicesSortTrace(f.Trace)
	}
	return f
}
