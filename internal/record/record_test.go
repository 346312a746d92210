package record

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

// frames builds a short recording's worth of frames in which listeners
// fill, drain, appear, vanish and lose fields.
func frames() []*Frame {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var out []*Frame
	for i := 0; i < 12; i++ {
		s := &snapshot.Snapshot{TakenAt: t0.Add(time.Duration(i) * time.Second)}
		s.Namespaces = []snapshot.Namespace{
			{Inode: 4026531840, Name: "host", Sysctls: snapshot.Sysctls{Somaxconn: i64(4096), TCPSyncookies: i64(1)},
				Counters: snapshot.Counters{ListenOverflows: u64(uint64(100 + 44*i)), ListenDrops: u64(uint64(100 + 44*i))}},
		}
		if i >= 3 && i < 9 {
			s.Namespaces = append(s.Namespaces, snapshot.Namespace{Inode: 4026532999, Name: "lab-1-1", Path: "/run/netns/lab-1-1", Error: "partly read: x"})
		}
		q := uint32(min(i, 6))
		l := snapshot.Listener{Netns: 4026531840, Family: "inet", Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Inode: 77,
			AcceptQueue: q, Backlog: 5, Drops: u64(uint64(10 * i)), Processes: []snapshot.Process{{PID: 4242, Comm: "nginx"}}}
		if i == 7 {
			l.Drops = nil // the kernel stopped saying
			l.Processes = nil
		}
		s.Listeners = append(s.Listeners, l)
		if i%5 != 4 {
			s.Listeners = append(s.Listeners, snapshot.Listener{Netns: 4026531840, Family: "inet6", Address: netip.MustParseAddr("::"), Port: 22, Inode: 12, Backlog: 128, Processes: []snapshot.Process{}})
		}
		// A field added to the model later (UNIX listeners' path) is carried
		// with no change to the format.
		s.Listeners = append(s.Listeners, snapshot.Listener{Netns: 4026531840, Family: "unix", Path: "/run/php/fpm.sock", Inode: 99, AcceptQueue: uint32(i % 3), Backlog: 511})
		// A top-level key of the model (how it was read) is carried as well.
		s.Source = "bpf_iter"
		if i >= 6 {
			s.Source = "sock_diag"
		}
		if i == 5 {
			s.Warnings = []string{"owners of 1 listener hidden"}
		}
		snapshot.SortFullest(s.Listeners)
		f := &Frame{Snapshot: s, Peaks: map[snapshot.ListenerKey]uint32{{Netns: 4026531840, Inode: 77}: q + 1}}
		f.Trace = []trace.ListenerStats{{
			ListenerID: trace.ListenerID{Netns: 4026531840, Listener: netip.MustParseAddrPort("127.0.0.1:8080")},
			Namespace:  "host", Processes: []snapshot.Process{{PID: 4242, Comm: "nginx"}},
			Workload: &snapshot.Workload{Namespace: "shop", Pod: "web-0", Container: "nginx"},
			Drops:    map[trace.Stage]uint64{trace.StageSyn: uint64(3 * i)},
		}}
		f.Trace[0].AcceptWait.Slots[40] = uint64(i)
		f.Trace[0].AcceptWait.Count = uint64(i)
		f.Trace[0].AcceptWait.Sum = time.Duration(i) * time.Millisecond
		f.Trace[0].AcceptWait.Max = time.Millisecond
		out = append(out, f)
	}
	return out
}

func encode(t testing.TB, fs []*Frame, keyEvery int) []byte {
	t.Helper()
	e := Encoder{KeyEvery: keyEvery}
	b, err := e.Header(Header{Program: "backlog test", Started: fs[0].Snapshot.TakenAt, Interval: 1, Sample: 0.1, BPF: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		r, err := e.Frame(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, r...)
	}
	return b
}

func decodeAll(t testing.TB, b []byte) ([]*Frame, []Damage) {
	t.Helper()
	d := NewDecoder(b)
	var out []*Frame
	for {
		f, err := d.Next()
		if err == io.EOF {
			return out, d.Damaged()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
}

// same compares what the views see of a frame: the snapshot, the delta
// (peaks and rates) and the trace.
func same(t *testing.T, i int, want, got *Frame, prevWant, prevGot *Frame) {
	t.Helper()
	wj, _ := json.Marshal(want.Snapshot)
	gj, _ := json.Marshal(got.Snapshot)
	if !bytes.Equal(wj, gj) {
		t.Fatalf("frame %d snapshot:\nwant %s\ngot  %s", i, wj, gj)
	}
	if !reflect.DeepEqual(want.Snapshot, got.Snapshot) {
		t.Fatalf("frame %d: snapshot differs beyond its JSON:\nwant %#v\ngot  %#v", i, want.Snapshot, got.Snapshot)
	}
	if wd, gd := want.Delta(prevWant), got.Delta(prevGot); !reflect.DeepEqual(wd, gd) {
		t.Fatalf("frame %d delta:\nwant %+v\ngot  %+v", i, wd, gd)
	}
	if !reflect.DeepEqual(want.Trace, got.Trace) {
		t.Fatalf("frame %d trace:\nwant %+v\ngot  %+v", i, want.Trace, got.Trace)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, every := range []int{1, 4, 1000} {
		want := frames()
		b := encode(t, want, every)
		got, dmg := decodeAll(t, b)
		if len(dmg) != 0 || len(got) != len(want) {
			t.Fatalf("every %d: %d frames, damage %v", every, len(got), dmg)
		}
		for i := range want {
			var pw, pg *Frame
			if i > 0 {
				pw, pg = want[i-1], got[i-1]
			}
			same(t, i, want[i], got[i], pw, pg)
		}
	}
}

// TestTornTail: a recording cut anywhere inside its last record replays
// every whole frame before the tear and says where it tore.
func TestTornTail(t *testing.T) {
	want := frames()
	b := encode(t, want, 1000)
	last := bytes.LastIndex(b, magic[:])
	for cut := last + 1; cut < len(b); cut += 7 {
		got, dmg := decodeAll(t, b[:cut])
		if len(got) != len(want)-1 {
			t.Fatalf("cut at %d of %d: %d frames, want %d", cut, len(b), len(got), len(want)-1)
		}
		if len(dmg) != 1 || !dmg[0].Torn || dmg[0].Offset != int64(last) {
			t.Fatalf("cut at %d: damage %v", cut, dmg)
		}
		if ValidPrefix(b[:cut]) != last {
			t.Fatalf("ValidPrefix %d, want %d", ValidPrefix(b[:cut]), last)
		}
		same(t, len(got)-1, want[len(got)-1], got[len(got)-1], want[len(got)-2], got[len(got)-2])
	}
}

// TestDamageResumesAtKeyFrame: a flipped byte in the middle loses that
// record and the deltas after it until the next key frame, never more, and
// never yields a wrong frame.
func TestDamageResumesAtKeyFrame(t *testing.T) {
	want := frames()
	b := encode(t, want, 4) // key frames at 0, 4, 8
	var offs []int
	for off := 0; off < len(b); {
		_, n, err := parseRecord(b[off:])
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += n
	}
	// offs[0] is the header; frame i is record i+1. Damage frame 5.
	bad := bytes.Clone(b)
	bad[offs[6]+recordHeaderLen+2] ^= 0xff
	got, dmg := decodeAll(t, bad)
	if len(dmg) != 1 || dmg[0].Torn || dmg[0].Offset != int64(offs[6]) {
		t.Fatalf("damage %v", dmg)
	}
	// Frames 0-4 and 8-11; 5 is damaged, 6 and 7 wait for the key frame.
	if len(got) != 9 {
		t.Fatalf("%d frames, want 9", len(got))
	}
	for i, w := range []int{0, 1, 2, 3, 4, 8, 9, 10, 11} {
		if !got[i].Snapshot.TakenAt.Equal(want[w].Snapshot.TakenAt) {
			t.Fatalf("frame %d at %v, want %v", i, got[i].Snapshot.TakenAt, want[w].Snapshot.TakenAt)
		}
		wj, _ := json.Marshal(want[w].Snapshot)
		gj, _ := json.Marshal(got[i].Snapshot)
		if !bytes.Equal(wj, gj) {
			t.Fatalf("frame %d differs", w)
		}
	}
}

// TestIdleIsSmall: an idle listener costs nothing in a delta frame.
func TestIdleIsSmall(t *testing.T) {
	fs := frames()
	for _, f := range fs {
		f.Snapshot = fs[0].Snapshot
		f.Peaks = fs[0].Peaks
		f.Trace = fs[0].Trace
	}
	var e Encoder
	if _, err := e.Frame(fs[0]); err != nil {
		t.Fatal(err)
	}
	r, err := e.Frame(fs[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(r) > recordHeaderLen+40 {
		t.Errorf("an unchanged frame takes %d bytes: %q", len(r), r[recordHeaderLen:])
	}
}

func FuzzDecoder(f *testing.F) {
	b := encode(f, frames(), 4)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(b[:recordHeaderLen+3])
	f.Add([]byte("BLGR"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(b)
		for i := 0; ; i++ {
			fr, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if fr.Snapshot == nil || fr.Header == nil {
				t.Fatal("frame without snapshot or header")
			}
			if i > len(b) {
				t.Fatal("more frames than bytes")
			}
		}
		if n := ValidPrefix(b); n < 0 || n > len(b) {
			t.Fatalf("ValidPrefix %d of %d", n, len(b))
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	rec := encode(b, frames(), 4)
	for b.Loop() {
		d := NewDecoder(rec)
		for {
			if _, err := d.Next(); err != nil {
				break
			}
		}
	}
}

// TestTraceFieldsKnown: trace tallies are recorded field by field (their
// own JSON leaves the histogram's slots out), so a field added to them must
// be added to wireTrace too; this test says so when it happens.
func TestTraceFieldsKnown(t *testing.T) {
	for _, c := range []struct {
		v    any
		want []string
	}{
		{trace.ListenerStats{}, []string{"ListenerID", "Namespace", "Processes", "Workload", "Drops", "AcceptWait", "RequestedBacklog"}},
		{trace.ListenerID{}, []string{"Netns", "Listener", "Inode"}},
		{trace.Histogram{}, []string{"Slots", "Count", "Sum", "Max"}},
	} {
		typ := reflect.TypeOf(c.v)
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v has fields %v; record them in wireTrace (encode.go) and docs/record.md, then update this test", typ, got)
		}
	}
}
