package exporter

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// build makes the metric families of one collection, sorted by name
// and their samples by labels, as a registry would. Built directly, they
// skip the registry's per-sample checks, which at 10,000 listeners cost
// more than the collection itself (docs/performance.md); they are
// consistent by construction: label names sorted, label sets unique.
func (r *result) build() []*dto.MetricFamily { return r.buildFamilies(true) }

// buildFamilies is build; without listeners it leaves out the five
// per-listener families (listenerMetrics), which the text format writes
// directly (text.go).
func (r *result) buildFamilies(listeners bool) []*dto.MetricFamily {
	fams := make(map[*metric]*dto.MetricFamily)
	family := func(m *metric) *dto.MetricFamily {
		f := fams[m]
		if f == nil {
			typ := m.typ
			f = &dto.MetricFamily{Name: &m.name, Help: &m.help, Type: &typ}
			fams[m] = f
		}
		return f
	}
	if listeners {
		for _, m := range listenerMetrics {
			family(m).Metric = make([]*dto.Metric, 0, len(r.listeners))
		}
	}
	seen := make(map[snapshot.Workload]bool)
	for i := range r.listeners {
		if listeners {
			r.listeners[i].add(family)
		}
		if w := r.listeners[i].workload; w != nil && !seen[*w] {
			seen[*w] = true
			add(family(mWorkloadInfo), 1, w.Container, w.ContainerID, w.Namespace, w.Node, w.Pod, w.PodUID, w.Runtime)
		}
	}
	for _, ns := range r.namespaces {
		// The pod (or container) the namespace is, as on listener series:
		// empty values keep a scrape's own namespace and pod off the
		// host's namespace under honor_labels (docs/metrics.md).
		var kns, pod, ctr string
		if w := ns.Workload; w != nil {
			kns, pod, ctr = w.Namespace, w.Pod, w.Container
		}
		add(family(mNetnsInfo), 1, ctr, strconv.FormatUint(ns.Inode, 10), kns, ns.Name, pod)
		for _, c := range ns.Counters.Named() {
			add(family(mTcpExt), float64(uint64(c.Value)), ctr, c.Name, kns, ns.Name, pod)
		}
		for _, s := range ns.Sysctls.Named() {
			add(family(mSysctl), float64(s.Value), ctr, kns, ns.Name, pod, s.Name)
		}
	}
	add(family(mScrapeDuration), r.duration.Seconds())
	for _, src := range sources {
		add(family(mScrapeErrors), float64(r.errors[src]), src)
	}
	add(family(mCollections), float64(r.collections))
	add(family(mNamespaces), float64(len(r.namespaces)))
	add(family(mListeners), float64(r.seen))
	add(family(mOmitted), float64(r.omitted))
	if r.source != "" {
		add(family(mSource), 1, r.source)
	}
	if r.sampler != nil {
		add(family(mSamples), float64(r.sampler.Samples))
		add(family(mSamplerSeconds), r.sampler.Busy.Seconds())
	}

	out := make([]*dto.MetricFamily, 0, len(fams))
	for m, f := range fams {
		if len(f.Metric) == 0 {
			continue // no listener reported drops, say
		}
		if m.labels != nil {
			// Listeners come sorted already; this pass is then linear.
			slices.SortFunc(f.Metric, compareLabels)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// add appends one sample to f; values follow the family's label names.
func add(f *dto.MetricFamily, v float64, values ...string) {
	m := &dto.Metric{}
	names := metricByName[f.GetName()].labels
	for i := range names {
		m.Label = append(m.Label, &dto.LabelPair{Name: &names[i], Value: &values[i]})
	}
	setValue(m, f.GetType(), v)
	f.Metric = append(f.Metric, m)
}

var metricByName = func() map[string]*metric {
	m := make(map[string]*metric, len(allMetrics))
	for _, d := range allMetrics {
		m[d.name] = d
	}
	return m
}()

func setValue(m *dto.Metric, typ dto.MetricType, v float64) {
	if typ == counter {
		m.Counter = &dto.Counter{Value: &v}
	} else {
		m.Gauge = &dto.Gauge{Value: &v}
	}
}

// listenerSamples hold the samples of one listener series in a single
// allocation; they share one label slice, read-only once built.
type listenerSamples struct {
	values  [10]string
	pairs   [10]dto.LabelPair
	labels  [10]*dto.LabelPair
	metrics [5]dto.Metric
	gauges  [4]dto.Gauge
	counter dto.Counter
	v       [5]float64
}

// add appends the series' samples to its families; drops and the SYN
// queue only when known.
func (s *series) add(family func(*metric) *dto.MetricFamily) {
	ls := &listenerSamples{values: [10]string{s.address, s.key.container, s.family, s.key.namespace, s.key.netns, s.key.path, s.key.pod, s.port, s.key.process, s.inode}}
	for i := range ls.pairs {
		ls.pairs[i].Name, ls.pairs[i].Value = &listenerLabels[i], &ls.values[i]
		ls.labels[i] = &ls.pairs[i]
	}
	ls.v = [5]float64{float64(s.acceptQueue), float64(s.peak), float64(s.backlog), float64(s.synQueue), float64(s.drops)}
	for i, m := range []*metric{mAcceptQueue, mAcceptQueuePeak, mBacklog, mSynQueue} {
		if m == mSynQueue && !s.hasSyn {
			continue // unknown, not 0
		}
		ls.gauges[i].Value = &ls.v[i]
		ls.metrics[i].Label, ls.metrics[i].Gauge = ls.labels[:], &ls.gauges[i]
		f := family(m)
		f.Metric = append(f.Metric, &ls.metrics[i])
	}
	if s.hasDrops {
		ls.counter.Value = &ls.v[4]
		ls.metrics[4].Label, ls.metrics[4].Counter = ls.labels[:], &ls.counter
		f := family(mDrops)
		f.Metric = append(f.Metric, &ls.metrics[4])
	}
}

// compareLabels orders samples as client_golang's registry does: label
// values in label-name order, compared as strings.
func compareLabels(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Label), len(b.Label))
}

// sortByLabels orders series as compareLabels orders their samples, by the
// sort keys that labelTexts gave them; known: every series was in the
// previous collection, whose order (the ranks) is then theirs too, as
// their labels are the same. A series is large: the order is found on
// indexes, then each series moved once, in place (a copy of 10,000 was a
// tenth of the collection's CPU, mostly page faults of the new slice).
func sortByLabels(ss []series, known bool) {
	order := make([]int32, len(ss))
	for i := range order {
		order[i] = int32(i)
	}
	if known {
		slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(ss[a].text.rank, ss[b].text.rank) })
	} else {
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(ss[a].text.sortKey, ss[b].text.sortKey) })
	}
	// ss[j] becomes ss[order[j]], one cycle of the permutation at a time.
	for i := range order {
		if order[i] < 0 {
			continue // placed
		}
		first := ss[i]
		for j := i; ; {
			k := int(order[j])
			order[j] = -1
			if k == i {
				ss[j] = first
				break
			}
			ss[j], j = ss[k], k
		}
	}
	for i := range ss {
		ss[i].text.rank = i
	}
}

// wrapped is a built sample handed to a registry through Collect.
type wrapped struct {
	desc *prometheus.Desc
	m    *dto.Metric
}

func (w wrapped) Desc() *prometheus.Desc { return w.desc }

func (w wrapped) Write(out *dto.Metric) error {
	out.Label, out.Gauge, out.Counter = w.m.Label, w.m.Gauge, w.m.Counter
	return nil
}
