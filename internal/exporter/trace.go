package exporter

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/trace"
	"github.com/backlog-dev/backlog/internal/workload"
)

// Names of the --bpf metrics.
const (
	nameDropEvents  = "backlog_listener_drop_events_total"
	nameAcceptWait  = "backlog_listener_accept_wait_seconds"
	nameTraceErrors = "backlog_trace_errors_total"
	nameStageTraced = "backlog_trace_stage_traced"
)

var traceMetricNames = []string{nameDropEvents, nameAcceptWait, nameTraceErrors, nameStageTraced}

var (
	descDropEvents = prometheus.NewDesc(nameDropEvents,
		"Packets the listen path dropped, or answered with a SYN cookie, seen by eBPF since serve started, by stage: "+
			"syn (accept queue full at SYN), syn-queue (SYN queue full, no cookies), syn-backlog (last quarter of "+
			"tcp_max_syn_backlog), ack (accept queue full at the final ACK), cookie (docs/trace.md). Packets, not clients; "+
			"except close: clients reset because the listener closed with them queued. Per socket (socket_inode: each "+
			"SO_REUSEPORT member; empty when the member is unknown).",
		[]string{"address", "container", "namespace", "netns", "pod", "port", "process", "socket_inode", "stage"}, nil)
	descAcceptWait = prometheus.NewDesc(nameAcceptWait,
		"Time from a connection's handshake completing to accept() returning it, seen by eBPF since serve started.",
		[]string{"address", "container", "namespace", "netns", "pod", "port", "process", "socket_inode"}, nil)
	descTraceErrors = prometheus.NewDesc(nameTraceErrors,
		"Scrapes whose eBPF statistics could not be read.", nil, nil)
	descStageTraced = prometheus.NewDesc(nameStageTraced,
		"1 if this kernel lets eBPF see the stage's drops, 0 if not (then its drop_events series are absent, not zero; "+
			"serve's log says what the kernel lacks).",
		[]string{"stage"}, nil)
)

// acceptWaitBuckets are powers of two from 256 µs to 33.5 s: edges of the
// kernel side's histogram slots, so each bucket count is exact.
var acceptWaitBuckets = func() []time.Duration {
	var b []time.Duration
	for us := time.Duration(256); us <= 1<<25; us <<= 1 {
		b = append(b, us*time.Microsecond)
	}
	return b
}()

// TraceCollector exports what `backlog trace` measures, for serve --bpf:
// drop events by stage and accept-wait histograms, per listener.
type TraceCollector struct {
	// Workloads names the pods and containers of the listeners' owners;
	// nil leaves the labels empty.
	Workloads *workload.Resolver
	// Names names namespaces as the listener series do (Exporter.NetnsName);
	// nil, or "" for a namespace it does not know, keeps the tracer's name,
	// else inode:N.
	Names func(inode uint64) string

	stats   func() ([]trace.ListenerStats, error)
	logger  *slog.Logger
	errors  uint64
	missing []trace.MissingStage
}

// SetMissing names the stages the tracer cannot see on this kernel
// (Tracer.Missing).
func (c *TraceCollector) SetMissing(m []trace.MissingStage) { c.missing = m }

// NewTraceCollector collects from stats, a running Tracer's Stats.
func NewTraceCollector(stats func() ([]trace.ListenerStats, error), logger *slog.Logger) *TraceCollector {
	return &TraceCollector{stats: stats, logger: logger}
}

// Describe sends the descriptions of the trace metrics.
func (c *TraceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDropEvents
	ch <- descAcceptWait
	ch <- descTraceErrors
	ch <- descStageTraced
}

// Collect reads the tracer's statistics.
func (c *TraceCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.stats()
	if err != nil {
		c.errors++
		c.logger.Warn("reading eBPF statistics failed", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(descTraceErrors, prometheus.CounterValue, float64(c.errors))
	for _, st := range trace.Stages {
		traced := 1.0
		for _, m := range c.missing {
			if m.Stage == st {
				traced = 0
			}
		}
		ch <- prometheus.MustNewConstMetric(descStageTraced, prometheus.GaugeValue, traced, st.String())
	}
	for _, s := range stats {
		netns := s.Namespace
		if c.Names != nil {
			if n := c.Names(s.Netns); n != "" {
				netns = n
			}
		}
		if netns == "" {
			netns = "inode:" + strconv.FormatUint(s.Netns, 10) // created after serve started
		}
		process := ""
		if len(s.Processes) > 0 {
			process = s.Processes[0].Comm
		}
		addr, port := s.Listener.Addr().String(), strconv.Itoa(int(s.Listener.Port()))
		inode := ""
		if s.Inode != 0 {
			inode = strconv.FormatUint(s.Inode, 10)
		}
		var kns, pod, ctr string
		if c.Workloads != nil {
			if w := collect.WorkloadOf(c.Workloads, s.Processes); w != nil {
				kns, pod, ctr = w.Namespace, w.Pod, w.Container
			}
		}
		for _, st := range trace.Stages {
			if n := s.Drops[st]; n > 0 {
				ch <- prometheus.MustNewConstMetric(descDropEvents, prometheus.CounterValue, float64(n), addr, ctr, kns, netns, pod, port, process, inode, st.String())
			}
		}
		if h := &s.AcceptWait; h.Count > 0 {
			cum := h.Cumulative(acceptWaitBuckets)
			buckets := make(map[float64]uint64, len(cum))
			for i, b := range acceptWaitBuckets {
				buckets[b.Seconds()] = cum[i]
			}
			ch <- prometheus.MustNewConstHistogram(descAcceptWait, h.Count, h.Sum.Seconds(), buckets, addr, ctr, kns, netns, pod, port, process, inode)
		}
	}
}
