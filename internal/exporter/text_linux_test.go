package exporter

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a ResponseWriter that counts what it is sent.
type discard struct {
	h http.Header
	n int64
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { d.n += int64(len(b)); return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkHandler10000 times a scrape of 10,000 listeners (a collection
// faked, the rest as serve runs it: series, label texts, sorting,
// encoding, compression) with serve's handler and, as the reference, with
// promhttp over the same gatherer: building every sample as dto.Metric and
// encoding it with expfmt, gzip at its default level (docs/performance.md).
func BenchmarkHandler10000(b *testing.B) {
	snap := &snapshot.Snapshot{Namespaces: []snapshot.Namespace{{Inode: 1, Name: "bl-bench-1234-1",
		Sysctls: snapshot.Sysctls{Somaxconn: ptr[int64](4096)}, Counters: snapshot.Counters{ListenOverflows: ptr[uint64](7)}}}}
	for i := range 10000 {
		l := listener(1, "127.0.0.1", uint16(10000+i), uint32(100000+i), uint32(i%3), 128, uint64(i%7), "fixture")
		l.SynQueue = ptr[uint32](0)
		snap.Listeners = append(snap.Listeners, l)
	}
	e := fake(snap, nil, Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	ours := Handler(slog.New(slog.DiscardHandler), 0, e, reg)
	theirs := promhttp.HandlerFor(ours.(*handler).shared, promhttp.HandlerOpts{})
	for _, c := range []struct {
		name     string
		h        http.Handler
		encoding string
	}{{"gzip", ours, "gzip"}, {"identity", ours, "identity"}, {"promhttp-gzip", theirs, "gzip"}, {"promhttp-identity", theirs, "identity"}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept-Encoding", c.encoding)
			var size int64
			cpu := cpuTime()
			for b.Loop() {
				w := &discard{h: http.Header{}}
				c.h.ServeHTTP(w, req)
				size = w.n
			}
			b.ReportMetric(float64(size)/1e6, "MB/scrape")
			// CPU beside wall time: the machine is shared.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}
