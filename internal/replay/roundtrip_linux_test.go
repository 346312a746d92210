package replay

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
)

// TestRoundTripLive writes what the kernel shows during a lab synflood and
// a lab overflow — real snapshots, the sampler's peaks, the eBPF tallies
// when this machine allows them — and reads it back: every frame, every
// delta and every tally equal what was written, and a copy torn in its
// last record gives back all frames before the tear.
func TestRoundTripLive(t *testing.T) {
	testutil.RequireRoot(t)
	for _, name := range []string{"overflow", "synflood"} {
		t.Run(name, func(t *testing.T) {
			run, err := scenario.Start(context.Background(), name, scenario.Params{Duration: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			defer run.Close()
			target := run.Target()
			opts := collect.Options{Targets: []collect.Target{target}}
			smp := sampler.New(sampler.Options{})
			defer smp.Close()
			smp.SetTargets(opts.Targets)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go smp.Run(ctx)
			var tr *trace.Tracer
			if trace.Check() == nil {
				tr, err = trace.New(trace.Options{Namespaces: []trace.Namespace{{Path: target.Path, Name: target.Name}}, OnlyNamespaces: true})
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				go tr.Run(ctx, nil)
			}
			dir := t.TempDir()
			os.Chmod(dir, 0o700)
			out, err := record.OpenOutput(filepath.Join(dir, "rec.blr"), record.OutputOptions{})
			if err != nil {
				t.Fatal(err)
			}
			w := record.NewWriter(out, record.Header{Program: "backlog test", Started: time.Now(), Interval: 0.5, Sample: 0.1, BPF: tr != nil}, 3)
			var written []*record.Frame
			for range 8 {
				time.Sleep(500 * time.Millisecond)
				snap, err := collect.Collect(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				f := &record.Frame{Snapshot: snap, Peaks: map[snapshot.ListenerKey]uint32{}}
				for k, v := range smp.Take() {
					f.Peaks[snapshot.ListenerKey{Netns: k.Netns, Inode: k.Inode}] = v
				}
				if tr != nil {
					if f.Trace, err = tr.Stats(); err != nil {
						t.Fatal(err)
					}
					if f.Trace == nil {
						f.Trace = []trace.ListenerStats{}
					}
				}
				if err := w.Write(f); err != nil {
					t.Fatal(err)
				}
				written = append(written, f)
			}
			w.Close()
			var read []*record.Frame
			dmg, err := Source{Path: filepath.Join(dir, "rec.blr")}.Frames(func(f *record.Frame) error { read = append(read, f); return nil })
			if err != nil || len(dmg) != 0 || len(read) != len(written) {
				t.Fatalf("read %d of %d frames: %v %v", len(read), len(written), err, dmg)
			}
			events := 0
			for i := range written {
				wj, _ := json.Marshal(written[i].Snapshot)
				rj, _ := json.Marshal(read[i].Snapshot)
				if string(wj) != string(rj) || !reflect.DeepEqual(written[i].Snapshot, read[i].Snapshot) {
					t.Fatalf("frame %d:\nwrote %s\nread  %s", i, wj, rj)
				}
				var pw, pr *record.Frame
				if i > 0 {
					pw, pr = written[i-1], read[i-1]
				}
				if !reflect.DeepEqual(written[i].Delta(pw), read[i].Delta(pr)) {
					t.Fatalf("frame %d: deltas differ", i)
				}
				if !reflect.DeepEqual(written[i].Trace, read[i].Trace) {
					t.Fatalf("frame %d trace:\nwrote %+v\nread  %+v", i, written[i].Trace, read[i].Trace)
				}
				for _, s := range read[i].Trace {
					events += int(s.Dropped())
				}
			}
			last := read[len(read)-1].Snapshot
			var l *snapshot.Listener
			for i := range last.Listeners {
				if last.Listeners[i].Port == run.Listener.Port {
					l = &last.Listeners[i]
				}
			}
			if l == nil || l.AcceptQueue+l.SynQueueLen() == 0 {
				t.Fatalf("the lab listener's queues are not in the recording: %+v", l)
			}
			t.Logf("%s: accept queue %d/%d, SYN queue %d, peak %d, %d eBPF drop events", name, l.AcceptQueue, l.Backlog, l.SynQueueLen(), read[len(read)-1].Peaks[l.Key()], events)

			b, _ := os.ReadFile(filepath.Join(dir, "rec.blr"))
			torn := filepath.Join(dir, "torn.blr")
			os.WriteFile(torn, b[:len(b)-3], 0o600)
			var got []*record.Frame
			dmg, err = Source{Path: torn}.Frames(func(f *record.Frame) error { got = append(got, f); return nil })
			if err != nil || len(got) != len(written)-1 || len(dmg) != 1 || !dmg[0].Torn {
				t.Fatalf("torn: %d frames, %v, %v", len(got), err, dmg)
			}
		})
	}
}
