package exporter

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Label names of listener series, in the sorted order the registry wants.
var (
	labelAddress = "address"
	labelNetns   = "netns"
	labelPort    = "port"
	labelProcess = "process"
)

// listenerSamples are the samples of one listener series. They share one
// label slice and come in one allocation: built one at a time with
// prometheus.MustNewConstMetric, labels were most of the cost of a scrape
// of 10,000 listeners (docs/performance.md).
type listenerSamples struct {
	pairs  [4]dto.LabelPair
	labels [4]*dto.LabelPair
	values [5]sample
}

// sample is a prometheus.Metric with precomputed labels.
type sample struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	counter bool
	value   float64
}

func (s *sample) Desc() *prometheus.Desc { return s.desc }

func (s *sample) Write(m *dto.Metric) error {
	m.Label = s.labels // read-only from here on, so sharing is safe
	if s.counter {
		m.Counter = &dto.Counter{Value: &s.value}
	} else {
		m.Gauge = &dto.Gauge{Value: &s.value}
	}
	return nil
}

// collect sends the series' samples; drops only when the kernel said.
func (s *series) collect(ch chan<- prometheus.Metric) {
	ls := &listenerSamples{}
	values := [...]string{s.address, s.key.netns, s.port, s.key.process}
	names := [...]*string{&labelAddress, &labelNetns, &labelPort, &labelProcess}
	for i := range ls.pairs {
		ls.pairs[i].Name, ls.pairs[i].Value = names[i], &values[i]
		ls.labels[i] = &ls.pairs[i]
	}
	ls.values = [5]sample{
		{desc: descAcceptQueue, value: float64(s.acceptQueue)},
		{desc: descAcceptQueuePeak, value: float64(s.peak)},
		{desc: descBacklog, value: float64(s.backlog)},
		{desc: descSynQueue, value: float64(s.synQueue)},
		{desc: descDrops, value: float64(s.drops), counter: true},
	}
	n := len(ls.values)
	if !s.hasDrops {
		n--
	}
	for i := range n {
		ls.values[i].labels = ls.labels[:]
		ch <- &ls.values[i]
	}
}

// sortByLabels orders series as the registry sorts samples (label values
// compared as strings, labels by name), so its sort finds them in order.
func sortByLabels(ss []series) {
	slices.SortFunc(ss, func(a, b series) int {
		return cmp.Or(
			cmp.Compare(a.address, b.address),
			cmp.Compare(a.key.netns, b.key.netns),
			cmp.Compare(a.port, b.port),
			cmp.Compare(a.key.process, b.key.process),
		)
	})
}
