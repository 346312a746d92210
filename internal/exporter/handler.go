package exporter

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
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

// sharedGatherer merges gatherers whose metric names are disjoint and gives
// concurrent scrapes one merged Gather: many scrapers then cost one
// collection and one set of metric families, not one each.
type sharedGatherer struct {
	gs     []prometheus.Gatherer
	flight flight[gathered]
}

type gathered struct {
	mfs []*dto.MetricFamily
	err error
}

func (s *sharedGatherer) Gather() ([]*dto.MetricFamily, error) {
	r := s.flight.do(func() gathered {
		var (
			all  []*dto.MetricFamily
			errs []error
		)
		for _, g := range s.gs {
			mfs, err := g.Gather()
			all = append(all, mfs...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		slices.SortFunc(all, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
		return gathered{all, errors.Join(errs...)}
	})
	return r.mfs, r.err // read-only for the encoders that share them
}

// Handler serves the metrics of gatherers, which must not share metric
// names (an Exporter and a registry without it), letting concurrent scrapes
// share one gather. maxRequests bounds parallel scrapes (0: no bound); a
// metric that fails is logged and left out, the rest is still served.
func Handler(logger *slog.Logger, maxRequests int, gatherers ...prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(&sharedGatherer{gs: gatherers}, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxRequests,
	})
}
