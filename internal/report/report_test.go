package report

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/replay"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

// recording writes 20 frames: a quiet listener, and one that overflows
// from frame 8 on, dropping 14 packets a second.
func recording(t *testing.T) string {
	t.Helper()
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var e record.Encoder
	b, _ := e.Header(record.Header{Program: "backlog test", Host: "web-1", Started: t0, Interval: 1})
	for i := range 20 {
		q, drops := uint32(0), uint64(0)
		if i >= 8 {
			q, drops = 6, uint64(14*(i-7))
		}
		s := &snapshot.Snapshot{TakenAt: t0.Add(time.Duration(i) * time.Second),
			Namespaces: []snapshot.Namespace{{Inode: 1, Name: "host", Sysctls: snapshot.Sysctls{Somaxconn: i64(4096)},
				Counters: snapshot.Counters{ListenOverflows: u64(drops), ListenDrops: u64(drops)}}},
			Listeners: []snapshot.Listener{
				{Netns: 1, Family: "inet", Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Inode: 7, AcceptQueue: q, Backlog: 5, Drops: u64(drops), Processes: []snapshot.Process{{PID: 42, Comm: "app"}}},
				{Netns: 1, Family: "inet", Address: netip.MustParseAddr("0.0.0.0"), Port: 22, Inode: 8, Backlog: 128, Drops: u64(0), Processes: []snapshot.Process{}},
			}}
		snapshot.SortFullest(s.Listeners)
		r, err := e.Frame(&record.Frame{Snapshot: s, Peaks: map[snapshot.ListenerKey]uint32{{Netns: 1, Inode: 7}: q}})
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, r...)
	}
	p := filepath.Join(t.TempDir(), "rec.blr")
	os.WriteFile(p, b, 0o600)
	return p
}

func TestBuild(t *testing.T) {
	r, err := Build(replay.Source{Path: recording(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Frames != 20 || len(r.Listeners) != 1 {
		t.Fatalf("%d frames, %d listeners that mattered", r.Frames, len(r.Listeners))
	}
	l := r.Listeners[0]
	if l.Listener != "127.0.0.1:8080" || l.Summary.MaxPeak != 6 || l.Summary.SecondsFull != 12 || *l.Summary.Drops != 168 {
		t.Errorf("summary %+v drops %v", l.Summary, *l.Summary.Drops)
	}
	if len(l.Peak) != 20 || *l.Peak[7] != 0 || *l.Peak[8] != 6 || l.DropsPerSec[0] != nil || *l.DropsPerSec[9] != 14 {
		t.Errorf("series %v", l.Peak)
	}
	if len(r.Namespaces) != 1 || *r.Namespaces[0].Rates["ListenOverflows"][9] != 14 {
		t.Errorf("namespace rates %+v", r.Namespaces)
	}
	if len(r.Marks) == 0 || r.Marks[0].Rule != "accept-queue-overflow" || r.Marks[0].From.Before(r.Since) {
		t.Errorf("marks %+v", r.Marks)
	}
	if len(r.Findings) == 0 || r.Findings[0].Rule != "accept-queue-overflow" {
		t.Errorf("findings %+v", r.Findings)
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default-src 'none'", "uPlot", "127.0.0.1:8080", "6 / 5", "accept-queue-overflow"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(html.String(), "http://") || strings.Contains(html.String(), "https://") && !strings.Contains(html.String(), "https://github.com/leeoniya/uPlot") {
		t.Errorf("the page names a URL")
	}
}

func TestOpenMetrics(t *testing.T) {
	var b bytes.Buffer
	if _, err := WriteOpenMetrics(&b, replay.Source{Path: recording(t)}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	om := b.String()
	for _, want := range []string{
		"# TYPE backlog_listener_drops counter\n",
		`backlog_listener_accept_queue_peak{address="127.0.0.1",family="inet",netns="host",port="8080",process="app",socket_inode="7"} 6 1796094008` + "\n",
		`backlog_netns_tcpext_total{counter="ListenOverflows",netns="host"} 14 1796094008` + "\n",
	} {
		if !strings.Contains(om, want) {
			t.Errorf("missing %q", want)
		}
	}
	if !strings.HasSuffix(om, "# EOF\n") || strings.Count(om, "# TYPE backlog_listener_accept_queue gauge") != 1 {
		t.Errorf("not one block per family, or no # EOF")
	}
}
