package exporter

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// DefaultMaxRequests bounds parallel scrapes. Scrapes share one gather, so
// a waiting scrape costs only its encoding: the bound can sit well above
// node_exporter's 40.
const DefaultMaxRequests = 100

// flight lets concurrent callers share one run of a function: a caller that
// arrives while a run is under way waits for it and gets its result; one
// that arrives later starts a new run. So at most one run is ever active.
type flight[T any] struct {
	mu   sync.Mutex
	call *flightCall[T]
}

type flightCall[T any] struct {
	done chan struct{}
	val  T
}

func (f *flight[T]) do(fn func() T) T {
	f.mu.Lock()
	if c := f.call; c != nil {
		f.mu.Unlock()
		<-c.done
		return c.val
	}
	c := &flightCall[T]{done: make(chan struct{})}
	f.call = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.call = nil
		f.mu.Unlock()
		close(c.done)
	}()
	c.val = fn()
	return c.val
}

// sharedGatherer gathers gatherers whose metric names are disjoint, in
// their order, and gives concurrent scrapes one gather: many scrapers
// then cost one collection, not one each. An Exporter among them gives
// its collection as it is (a result), so that the text format can write
// its per-listener families without building them (text.go).
type sharedGatherer struct {
	gs     []prometheus.Gatherer
	flight flight[gathered]
}

// gathered is one gather: the exporter's collection (nil without an
// Exporter) and the other gatherers' families. Read only: scrapes share it.
type gathered struct {
	res    *result
	others []*dto.MetricFamily
	err    error
}

func (s *sharedGatherer) gather() gathered {
	return s.flight.do(func() gathered {
		var (
			g    gathered
			errs []error
		)
		for _, gg := range s.gs {
			if e, ok := gg.(*Exporter); ok {
				g.res = e.flight.do(e.collectOnce)
				continue
			}
			mfs, err := gg.Gather()
			g.others = append(g.others, mfs...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		g.err = errors.Join(errs...)
		return g
	})
}

// Gather merges every family, sorted by name: the path of the formats
// that text.go does not write (protobuf).
func (s *sharedGatherer) Gather() ([]*dto.MetricFamily, error) {
	return s.merge(s.gather())
}

func (s *sharedGatherer) merge(g gathered) ([]*dto.MetricFamily, error) {
	all := slices.Clone(g.others)
	if g.res != nil {
		all = append(all, g.res.all()...)
	}
	slices.SortFunc(all, byName)
	return all, g.err
}

func byName(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) }

// handler serves the text format itself and hands other formats to
// promhttp, which serves them as before.
type handler struct {
	shared   *sharedGatherer
	inFlight chan struct{} // nil: no bound
	max      int
	errorLog *log.Logger
	other    http.Handler
}

// Handler serves the metrics of gatherers, which must not share metric
// names (an Exporter and a registry without it), letting concurrent scrapes
// share one gather. maxRequests bounds parallel scrapes (0: no bound); a
// metric that fails is logged and left out, the rest is still served.
//
// It negotiates as promhttp.HandlerFor does with its defaults (the text
// format 0.0.4 or 1.0.0, or protobuf; identity or gzip), and writes the
// text format itself: the per-listener families directly, the others with
// expfmt, gzip at its fastest level on every CPU (gzipWriter). Other
// formats go through promhttp.
func Handler(logger *slog.Logger, maxRequests int, gatherers ...prometheus.Gatherer) http.Handler {
	h := &handler{
		shared:   &sharedGatherer{gs: gatherers},
		max:      maxRequests,
		errorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}
	if maxRequests > 0 {
		h.inFlight = make(chan struct{}, maxRequests)
	}
	h.other = promhttp.HandlerFor(h.shared, promhttp.HandlerOpts{
		ErrorLog:      h.errorLog,
		ErrorHandling: promhttp.ContinueOnError,
	})
	return h
}

func (h *handler) ServeHTTP(rsp http.ResponseWriter, req *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(rsp, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", h.max),
				http.StatusServiceUnavailable)
			return
		}
	}
	format := expfmt.NegotiateAccept(req.Header, expfmt.DefaultAcceptedFormats()...)
	if format.FormatType() != expfmt.TypeTextPlain {
		h.other.ServeHTTP(rsp, req)
		return
	}
	var only map[string]bool // promhttp's name[] filter
	if req.URL != nil {
		if names := req.URL.Query()["name[]"]; len(names) > 0 {
			only = make(map[string]bool, len(names))
			for _, n := range names {
				only[n] = true
			}
		}
	}

	g := h.shared.gather()
	if g.err != nil {
		h.errorLog.Println("error gathering metrics:", g.err)
		if len(g.others) == 0 && g.res == nil {
			http.Error(rsp, "An error has occurred while serving metrics:\n\n"+g.err.Error(), http.StatusInternalServerError)
			return
		}
	}
	rsp.Header().Add("Vary", "Accept")
	rsp.Header().Add("Vary", "Accept-Encoding")
	rsp.Header().Set("Content-Type", string(format))
	var out io.Writer = rsp
	var gz *gzipWriter
	if acceptsGzip(req) {
		rsp.Header().Set("Content-Encoding", "gzip")
		gz = newGzipWriter(rsp)
		out = gz
	}
	err := h.writeText(out, gz, format, g, only)
	if gz != nil {
		err = cmp.Or(err, gz.Close())
	}
	if err != nil {
		h.errorLog.Println("error encoding and sending metric family:", err)
	}
}

// writeText writes g in a text format, the families in name order: the
// per-listener ones directly (text.go), the others with expfmt. only, if
// not nil, are the families to write. A family expfmt refuses is logged
// and left out, as promhttp does with ContinueOnError. With gz (out
// itself), the per-listener families go as compressed segments.
func (h *handler) writeText(out io.Writer, gz *gzipWriter, format expfmt.Format, g gathered, only map[string]bool) error {
	type part struct {
		name string
		mf   *dto.MetricFamily // nil: the per-listener family m
		m    *metric
	}
	parts := make([]part, 0, len(g.others)+32)
	for _, mf := range g.others {
		parts = append(parts, part{name: mf.GetName(), mf: mf})
	}
	if r := g.res; r != nil {
		for _, mf := range r.small {
			parts = append(parts, part{name: mf.GetName(), mf: mf})
		}
		for _, m := range listenerMetrics {
			if r.hasListenerFamily(m) {
				parts = append(parts, part{name: m.name, m: m})
			}
		}
	}
	slices.SortFunc(parts, func(a, b part) int { return strings.Compare(a.name, b.name) })

	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() { bw.Reset(nil); bufPool.Put(bw) }()
	enc := expfmt.NewEncoder(bw, format)
	var num []byte
	for _, p := range parts {
		if only != nil && !only[p.name] {
			continue
		}
		if p.mf == nil && gz != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
			for _, seg := range g.res.segments(p.m) {
				gz.writeDeflated(seg.out, seg.crc, seg.n)
			}
		} else if p.mf == nil {
			num = g.res.writeListenerText(bw, p.m, num)
		} else if err := enc.Encode(p.mf); err != nil {
			h.errorLog.Println("error encoding and sending metric family:", err)
		}
	}
	return bw.Flush()
}

var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// acceptsGzip negotiates the content encoding as promhttp does between its
// offers identity and gzip (in that order): the one with the highest
// q-value in Accept-Encoding, "*" matching either, the first offer on a
// tie, identity when neither is named.
func acceptsGzip(req *http.Request) bool {
	best, bestQ := "identity", -1.0
	specs := parseAcceptEncoding(req.Header.Values("Accept-Encoding"))
	for _, offer := range []string{"identity", "gzip"} {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	return best == "gzip" && bestQ > 0
}

type acceptSpec struct {
	value string
	q     float64
}

// parseAcceptEncoding parses Accept-Encoding values ("gzip, br;q=0.5"); a
// value whose q-value does not parse is skipped with the rest of its
// header line, as promhttp's parser does.
func parseAcceptEncoding(lines []string) []acceptSpec {
	var specs []acceptSpec
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			value, params, hasParams := strings.Cut(item, ";")
			s := acceptSpec{value: strings.TrimSpace(value), q: 1}
			if s.value == "" {
				break
			}
			if hasParams {
				q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
				v, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
				if !ok || err != nil || v < 0 || v > 1 {
					break
				}
				s.q = v
			}
			specs = append(specs, s)
		}
	}
	return specs
}
