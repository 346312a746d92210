package snapshot

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"slices"
	"time"
)

// DeltaEncoder writes deltas as JSON lines, byte for byte what
// json.NewEncoder(w).Encode(d) writes, but re-encodes only the listeners
// that changed since the previous delta: at 10,000 idle listeners encoding
// every one every second was a sixth of `backlog top --json`'s CPU.
// Not safe for concurrent use.
type DeltaEncoder struct {
	w     io.Writer
	buf   bytes.Buffer
	cache map[ListenerKey]*encodedListener
	gen   uint64
}

type encodedListener struct {
	ld   ListenerDelta
	json []byte
	gen  uint64 // the last delta that had it
}

// NewDeltaEncoder returns an encoder writing to w.
func NewDeltaEncoder(w io.Writer) *DeltaEncoder {
	return &DeltaEncoder{w: w, cache: make(map[ListenerKey]*encodedListener)}
}

// deltaHead and deltaTail are Delta without its listeners, split where
// they go; TestDeltaEncoderFields keeps them in step with Delta.
type deltaHead struct {
	TakenAt    time.Time        `json:"taken_at"`
	Interval   float64          `json:"interval_seconds"`
	Namespaces []NamespaceDelta `json:"namespaces"`
}

type deltaTail struct {
	Warnings []string `json:"warnings,omitempty"`
	Hidden   []Hidden `json:"hidden,omitempty"`
}

// Encode writes d and a newline.
func (e *DeltaEncoder) Encode(d *Delta) error {
	e.gen++
	e.buf.Reset()
	head, err := json.Marshal(deltaHead{d.TakenAt, d.Interval, d.Namespaces})
	if err != nil {
		return err
	}
	e.buf.Write(head[:len(head)-1]) // without its "}"
	e.buf.WriteString(`,"listeners":`)
	if d.Listeners == nil {
		e.buf.WriteString("null")
	} else {
		e.buf.WriteByte('[')
		for i := range d.Listeners {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			b, err := e.listener(&d.Listeners[i])
			if err != nil {
				return err
			}
			e.buf.Write(b)
		}
		e.buf.WriteByte(']')
	}
	tail, err := json.Marshal(deltaTail{d.Warnings, d.Hidden})
	if err != nil {
		return err
	}
	if len(tail) > 2 { // not "{}"
		e.buf.WriteByte(',')
		e.buf.Write(tail[1:])
	} else {
		e.buf.WriteByte('}')
	}
	e.buf.WriteByte('\n')
	// Forget listeners gone, so the cache stays the size of the table.
	if len(e.cache) > len(d.Listeners) {
		for k, c := range e.cache {
			if c.gen != e.gen {
				delete(e.cache, k)
			}
		}
	}
	_, err = e.w.Write(e.buf.Bytes())
	return err
}

// listener returns l encoded, from the cache when it did not change.
func (e *DeltaEncoder) listener(l *ListenerDelta) ([]byte, error) {
	k := l.Key()
	c := e.cache[k]
	if c != nil && c.gen != e.gen && sameListenerDelta(&c.ld, l) {
		c.gen = e.gen
		return c.json, nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	if c == nil || c.gen == e.gen { // new, or twice in one delta: keep the first
		if c != nil {
			return b, nil
		}
		c = &encodedListener{}
		e.cache[k] = c
	}
	c.ld, c.json, c.gen = *l, b, e.gen
	return b, nil
}

// sameListenerDelta reports whether a and b encode alike: every field
// equal, pointers by what they point to. TestSameListenerDelta changes
// each field in turn, so a field added to Listener or ListenerDelta and
// forgotten here fails it.
func sameListenerDelta(a, b *ListenerDelta) bool {
	x, y := &a.Listener, &b.Listener
	return a.AcceptQueuePeak == b.AcceptQueuePeak && sameFloat(a.DropsPerSecond, b.DropsPerSecond) &&
		x.Netns == y.Netns && x.Family == y.Family && x.Address == y.Address && x.Port == y.Port &&
		x.Path == y.Path && x.Type == y.Type && samePtr(x.VFS, y.VFS) && x.Inode == y.Inode &&
		samePtr(x.UID, y.UID) && x.AcceptQueue == y.AcceptQueue && x.Backlog == y.Backlog &&
		samePtr(x.SynQueue, y.SynQueue) && samePtr(x.GroupSynQueue, y.GroupSynQueue) &&
		x.FastOpenQueue == y.FastOpenQueue && samePtr(x.Drops, y.Drops) && samePtr(x.V6Only, y.V6Only) &&
		(x.Processes == nil) == (y.Processes == nil) && slices.Equal(x.Processes, y.Processes) &&
		samePtr(x.Workload, y.Workload)
}

// sameFloat compares bits: 0 and -0 are == but encode differently.
func sameFloat(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return math.Float64bits(*a) == math.Float64bits(*b)
}

func samePtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
