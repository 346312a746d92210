package snapshot

import "time"

// ListenerKey names one listening socket across snapshots: its namespace's
// inode and its own.
type ListenerKey struct {
	Netns uint64
	Inode uint32
}

// Key returns the listener's key.
func (l *Listener) Key() ListenerKey { return ListenerKey{l.Netns, l.Inode} }

// Delta is what changed between two snapshots: the current one, with peaks
// from fast sampling in between and rates over the interval. It is the
// record `backlog top` streams, one per interval.
type Delta struct {
	TakenAt  time.Time `json:"taken_at"`
	Interval float64   `json:"interval_seconds"`
	// Namespaces carry their counters and sysctls, plus counter rates.
	Namespaces []NamespaceDelta `json:"namespaces"`
	Listeners  []ListenerDelta  `json:"listeners"`
	Warnings   []string         `json:"warnings,omitempty"`
	Hidden     []Hidden         `json:"hidden,omitempty"`
}

// NamespaceDelta is a namespace with the per-second rate of each TcpExt
// counter over the interval (absent for the first snapshot of a namespace).
type NamespaceDelta struct {
	Namespace
	Rates map[string]float64 `json:"rates,omitempty"`
}

// ListenerDelta is a listener with what moved since the previous snapshot.
type ListenerDelta struct {
	Listener
	// AcceptQueuePeak is the longest accept queue seen during the interval
	// (sampled between snapshots), never less than the current length.
	AcceptQueuePeak uint32 `json:"accept_queue_peak"`
	// DropsPerSecond is the rate of sk_drops over the interval; absent
	// for a listener new in this snapshot or without drops.
	DropsPerSecond *float64 `json:"drops_per_second,omitempty"`
}

// Diff computes the delta from prev (nil for the first snapshot) to cur.
// peaks are the sampled accept-queue peaks of the interval, by listener.
func Diff(prev, cur *Snapshot, peaks map[ListenerKey]uint32) Delta {
	d := Delta{TakenAt: cur.TakenAt, Warnings: cur.Warnings, Hidden: cur.Hidden}
	var secs float64
	if prev != nil {
		secs = cur.TakenAt.Sub(prev.TakenAt).Seconds()
		d.Interval = secs
	}
	// Sized up front: at 10,000 listeners, growing the slice of large
	// deltas and the map by doubling was most of a refresh's Diff.
	// (nil when there are none, as before: JSON says null, not [].)
	if n := len(cur.Namespaces); n > 0 {
		d.Namespaces = make([]NamespaceDelta, 0, n)
	}
	if n := len(cur.Listeners); n > 0 {
		d.Listeners = make([]ListenerDelta, 0, n)
	}
	prevNS := map[uint64]*Namespace{}
	var prevL map[ListenerKey]*Listener
	if prev != nil {
		prevL = make(map[ListenerKey]*Listener, len(prev.Listeners))
		for i := range prev.Namespaces {
			prevNS[prev.Namespaces[i].Inode] = &prev.Namespaces[i]
		}
		for i := range prev.Listeners {
			prevL[prev.Listeners[i].Key()] = &prev.Listeners[i]
		}
	}
	for _, ns := range cur.Namespaces {
		nd := NamespaceDelta{Namespace: ns}
		if p, ok := prevNS[ns.Inode]; ok && secs > 0 {
			nd.Rates = make(map[string]float64)
			for name, v := range ns.Counters.Delta(p.Counters) {
				if v >= 0 {
					nd.Rates[name] = float64(v) / secs
				}
			}
		}
		d.Namespaces = append(d.Namespaces, nd)
	}
	for i := range cur.Listeners {
		l := &cur.Listeners[i]
		ld := ListenerDelta{Listener: *l, AcceptQueuePeak: max(peaks[l.Key()], l.AcceptQueue)}
		if p, ok := prevL[l.Key()]; ok && secs > 0 && p.Drops != nil && l.Drops != nil && *l.Drops >= *p.Drops {
			r := float64(*l.Drops-*p.Drops) / secs
			ld.DropsPerSecond = &r
		}
		d.Listeners = append(d.Listeners, ld)
	}
	return d
}
