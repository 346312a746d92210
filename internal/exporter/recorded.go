package exporter

import (
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Families returns the listener and namespace metric families a scrape of
// snap would have given, with peaks as the sampled peaks: the series
// `backlog report --openmetrics` backfills from a recording, so the shipped
// rules and dashboard work on it unchanged. The exporter's own families
// (scrape duration, errors) are left out: they describe a live process.
func Families(snap *snapshot.Snapshot, peaks map[snapshot.ListenerKey]uint32) []*dto.MetricFamily {
	sp := make(map[sampler.Key]uint32, len(peaks))
	for k, v := range peaks {
		sp[sampler.Key{Netns: k.Netns, Inode: k.Inode}] = v
	}
	r := &result{listeners: buildSeries(snap, sp), namespaces: snap.Namespaces}
	labelTexts(r.listeners, make(map[uint32]*seriesText), 1)
	sortByLabels(r.listeners, false)
	fams := r.build()
	out := fams[:0]
	for _, f := range fams {
		if n := f.GetName(); strings.HasPrefix(n, "backlog_listener_") || strings.HasPrefix(n, "backlog_netns_") {
			out = append(out, f)
		}
	}
	return out
}

// TraceFamilies returns the families serve --bpf exports for these eBPF
// tallies (drop events by stage, accept-wait histograms), without the
// exporter's own error counter.
func TraceFamilies(stats []trace.ListenerStats) ([]*dto.MetricFamily, error) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewTraceCollector(func() ([]trace.ListenerStats, error) { return stats, nil }, slog.New(slog.DiscardHandler)))
	fams, err := reg.Gather()
	out := fams[:0]
	for _, f := range fams {
		if f.GetName() != nameTraceErrors {
			out = append(out, f)
		}
	}
	return out, err
}
