package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// withListeners makes a lab namespace holding n listeners on 127.0.0.1 with
// backlog b; all are closed at cleanup.
func withListeners(t testing.TB, n, b int) (*lab.Namespace, []*lab.Listener) {
	t.Helper()
	testutil.RequireRoot(t)
	ns, err := lab.NewNamespace("bl-exporter")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	ls := make([]*lab.Listener, n)
	for i := range ls {
		if ls[i], err = ns.Listen(netip.MustParseAddrPort("127.0.0.1:0"), b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ls[i].Close() })
	}
	return ns, ls
}

// rig is the exporter as serve wires it, reading one lab namespace, with
// the sampler running.
type rig struct {
	ns      *lab.Namespace
	exp     *Exporter
	handler http.Handler
}

func newRig(t testing.TB, ns *lab.Namespace) *rig {
	t.Helper()
	targets := []collect.Target{{Path: ns.Path, Name: ns.Name}}
	smp := sampler.New(sampler.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	exp := New(Options{
		Resolve: func() (collect.Options, string, error) { return collect.Options{Targets: targets}, "", nil },
		Sampler: smp,
	})
	reg := prometheus.NewRegistry() // as serve's: the exporter's own metrics beside it
	reg.MustRegister(collectors.NewGoCollector())
	return &rig{ns: ns, exp: exp, handler: Handler(slog.New(slog.DiscardHandler), DefaultMaxRequests, reg, exp)}
}

func (r *rig) scrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return mfs
}

// value returns the value of the series of name whose labels include want.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		have := make(map[string]string)
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func (r *rig) listenerLabels(l *lab.Listener) map[string]string {
	return map[string]string{"netns": r.ns.Name, "address": l.Addr.String(), "port": strconv.Itoa(int(l.Port))}
}

// queue reads the listener's accept queue without the exporter, whose
// scrapes would start new peak windows.
func queue(t *testing.T, ns *lab.Namespace, port uint16) uint32 {
	t.Helper()
	snap, err := collect.Collect(context.Background(), collect.Options{Targets: []collect.Target{{Path: ns.Path, Name: ns.Name}}, Ports: []uint16{port}, NoOwners: true})
	if err != nil || len(snap.Listeners) != 1 {
		t.Fatalf("collect: %v %+v", err, snap)
	}
	return snap.Listeners[0].AcceptQueue
}

// TestScrapeOverflow: backlog 5, 20 clients never accepted: the scrape says
// 6/5, drops rising, the owner, and the namespace's counters.
func TestScrapeOverflow(t *testing.T) {
	ns, ls := withListeners(t, 1, 5)
	l := ls[0]
	r := newRig(t, ns)
	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	labels := r.listenerLabels(l)
	comm, _ := os.ReadFile("/proc/self/comm")
	labels["process"] = strings.TrimSpace(string(comm))
	testutil.Eventually(t, 5*time.Second, func() error {
		mfs := r.scrape(t)
		q, _ := value(mfs, "backlog_listener_accept_queue", labels)
		peak, _ := value(mfs, "backlog_listener_accept_queue_peak", labels)
		backlog, _ := value(mfs, "backlog_listener_backlog", labels)
		drops, _ := value(mfs, "backlog_listener_drops_total", labels)
		overflows, _ := value(mfs, "backlog_netns_tcpext_total", map[string]string{"netns": ns.Name, "counter": "ListenOverflows"})
		if q != 6 || peak != 6 || backlog != 5 || drops == 0 || overflows == 0 {
			return fmt.Errorf("accept_queue %v peak %v backlog %v drops %v ListenOverflows %v; want 6 6 5 >0 >0", q, peak, backlog, drops, overflows)
		}
		return nil
	})
}

// TestBurstBetweenScrapes: the queue fills to backlog+1 and drains again
// well within one scrape interval; the next scrape's peak still says 6.
func TestBurstBetweenScrapes(t *testing.T) {
	ns, ls := withListeners(t, 1, 5)
	l := ls[0]
	r := newRig(t, ns)
	labels := r.listenerLabels(l)
	r.scrape(t) // a window starts

	burst := time.Now()
	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 6) // backlog+1: none dropped
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 2*time.Second, func() error {
		if q := queue(t, ns, l.Port); q != 6 {
			return fmt.Errorf("accept queue %d, want 6", q)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // three samples at the default 100 ms
	fds, err := l.AcceptN(6)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		t.Fatal(err)
	}
	if q := queue(t, ns, l.Port); q != 0 {
		t.Fatalf("accept queue %d after accepting all, want 0", q)
	}
	took := time.Since(burst)

	mfs := r.scrape(t)
	q, _ := value(mfs, "backlog_listener_accept_queue", labels)
	peak, _ := value(mfs, "backlog_listener_accept_queue_peak", labels)
	t.Logf("burst of %v: accept_queue %v at scrape, peak %v", took.Round(time.Millisecond), q, peak)
	if q != 0 || peak != 6 {
		t.Errorf("accept_queue %v peak %v after a %v burst; want 0 and 6 (backlog+1)", q, peak, took)
	}
	time.Sleep(200 * time.Millisecond)
	if peak, _ := value(r.scrape(t), "backlog_listener_accept_queue_peak", labels); peak != 0 {
		t.Errorf("peak %v in the next window, want 0", peak)
	}
}

// TestLoad: 50 scrapers at once for a bounded time over real HTTP. Every
// response is whole, memory stays flat, and no two collections overlap.
// The scrapers run in a process of their own (scrapersEnv), so the heap
// measured here is the exporter's: 50 parsers' worth of responses in the
// same heap made its peaks those of the test, not of the exporter.
func TestLoad(t *testing.T) {
	const (
		scrapers   = 50
		listeners  = 200
		duration   = 3 * time.Second
		maxScrapes = 300 // per scraper, whichever comes first
	)
	ns, _ := withListeners(t, listeners, 128)
	r := newRig(t, ns)
	srv := httptest.NewServer(r.handler)
	defer srv.Close()
	if n := len(r.scrape(t)["backlog_listener_accept_queue"].GetMetric()); n != listeners {
		t.Fatalf("%d listener series before the load, want %d", n, listeners)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	baseline := heap()

	load := scrapeLoad{URL: srv.URL, Scrapers: scrapers, MaxScrapes: maxScrapes,
		Deadline: time.Now().Add(duration), Listeners: listeners, Sources: len(sources)}
	spec, err := json.Marshal(load)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, self) // killed by pid on the timeout
	cmd.Env = append(os.Environ(), scrapersEnv+"="+string(spec))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// Heap in use after GC, every half second while the scrapers run.
	var samples []uint64
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-tick.C:
			samples = append(samples, heap())
		}
	}
	if err != nil {
		t.Fatalf("scrapers: %v: %s", err, stderr.String())
	}
	var res scrapeResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("scrapers said %q: %v", stdout.String(), err)
	}
	collections := r.exp.collections
	t.Logf("%d scrapes by %d scrapers in %v, %d failed; %d collections, at most %d at once; heap in use MiB: %v",
		res.Scrapes, scrapers, duration, res.Failures, collections, r.exp.maxActive.Load(), mib(samples))
	if res.Failures > 0 || res.Scrapes == 0 {
		t.Errorf("%d of %d scrapes failed: %v", res.Failures, res.Scrapes, res.Errors)
	}
	if r.exp.maxActive.Load() != 1 {
		t.Errorf("%d collections ran at once, want 1", r.exp.maxActive.Load())
	}
	if uint64(res.Scrapes) <= collections {
		t.Errorf("%d collections for %d scrapes: concurrent scrapes did not share", collections, res.Scrapes)
	}
	// Flat: once the scrapers are done the heap is back near where it was
	// before them (nothing accumulates per scrape), and while they ran it
	// stayed bounded. Samples taken mid-run hold whatever responses are in
	// flight, so they are bounded, not compared with each other.
	final := heap()
	t.Logf("heap in use before %d MiB, after %d MiB", baseline>>20, final>>20)
	if final > baseline+8<<20 {
		t.Errorf("heap in use grew from %d MiB before the load to %d MiB after it", baseline>>20, final>>20)
	}
	if m := maxOf(samples); m > 32<<20 {
		t.Errorf("heap in use reached %d MiB under load", m>>20)
	}
}

func maxOf(s []uint64) uint64 {
	m := uint64(0)
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

func mib(s []uint64) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%.1f", float64(v)/(1<<20))
	}
	return out
}

// BenchmarkScrape10000 times one whole scrape over HTTP, as Prometheus
// makes it, of a namespace holding 10,000 listeners, with the sampler
// running as serve runs it (docs/performance.md). Prometheus asks for gzip;
// identity is the same scrape without compression.
func BenchmarkScrape10000(b *testing.B) {
	ns, _ := withListeners(b, 10000, 128)
	r := newRig(b, ns)
	srv := httptest.NewServer(r.handler)
	defer srv.Close()
	for _, enc := range []string{"gzip", "identity"} {
		b.Run(enc, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			defer client.CloseIdleConnections()
			var size int64
			for b.Loop() {
				req, _ := http.NewRequest("GET", srv.URL, nil)
				req.Header.Set("Accept-Encoding", enc)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				size, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("status %d, %v", resp.StatusCode, err)
				}
			}
			b.ReportMetric(float64(size)/1e6, "MB/scrape")
		})
	}
}
