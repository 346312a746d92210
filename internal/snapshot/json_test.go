package snapshot

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestListenerAppendJSON: byte for byte json.Marshal, with every field,
// however deep, changed, set to nil or emptied in turn, from a listener
// with all set and from the zero listener, and with strings encoding/json
// escapes.
func TestListenerAppendJSON(t *testing.T) {
	full := fullListenerDelta()
	paths := map[string]func(reflect.Value){}
	mutations(reflect.ValueOf(&full).Elem(), "", paths)
	ls := []Listener{{}, full.Listener}
	for path := range paths {
		ls = append(ls, changed(full, path).Listener)
	}
	for _, s := range []string{`a"b\c`, "<&>", "tab\tnl\n\x00\x1f\x7f", "ü\u2028\u2029", "bad\xff\xfe", ""} {
		l := full.Listener
		w := *l.Workload
		l.Path, l.Processes, l.Workload = s, []Process{{Comm: s, State: s, Role: s}}, &w
		w.Pod, w.Node = s, s
		ls = append(ls, l)
	}
	zone := full.Listener
	zone.Address = netip.MustParseAddr("fe80::1%eth<0>")
	ls = append(ls, zone)
	for _, l := range ls {
		want, err := json.Marshal(&l)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
}

// TestEncodeJSON: a whole snapshot, as json.Encoder writes it, with and
// without the optional fields, and with listeners enough to be written in
// several pieces.
func TestEncodeJSON(t *testing.T) {
	full := &Snapshot{TakenAt: time.Date(2026, 12, 1, 3, 0, 0, 5, time.UTC), Namespaces: []Namespace{{Inode: 1, Name: "a<b>"}},
		Listeners: manyListeners(2000), Node: "n", Source: "bpf_iter", Warnings: []string{"w & <x>"}, Hidden: []Hidden{{PID: 1, Errno: "EACCES"}}}
	for _, s := range []*Snapshot{{}, {Listeners: []Listener{}}, full, {TakenAt: full.TakenAt, Listeners: full.Listeners[:1], Source: "sock_diag"}} {
		var want, got bytes.Buffer
		if err := json.NewEncoder(&want).Encode(s); err != nil {
			t.Fatal(err)
		}
		w := &countingWriter{w: &got}
		if err := s.EncodeJSON(w); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("EncodeJSON:\n%s\njson.Encoder:\n%s", got.String(), want.String())
		}
		if len(s.Listeners) == 2000 && w.writes < 2 {
			t.Errorf("%d bytes in %d write", got.Len(), w.writes)
		}
	}
}

type countingWriter struct {
	w      io.Writer
	writes int
}

func (c *countingWriter) Write(b []byte) (int, error) { c.writes++; return c.w.Write(b) }

func BenchmarkEncodeJSON(b *testing.B) {
	s := &Snapshot{Listeners: manyListeners(10000)}
	for b.Loop() {
		s.EncodeJSON(io.Discard)
	}
}

func BenchmarkEncoderJSON(b *testing.B) {
	s := &Snapshot{Listeners: manyListeners(10000)}
	for b.Loop() {
		json.NewEncoder(io.Discard).Encode(s)
	}
}
