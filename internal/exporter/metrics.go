package exporter

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Error sources, the values of backlog_scrape_errors_total's source label.
const (
	SourceNetns     = "netns"     // listing the namespaces to read
	SourceNamespace = "namespace" // reading a namespace; its listeners are missing
	SourceNetstat   = "netstat"   // its TcpExt counters
	SourceSysctl    = "sysctl"    // its sysctls
	SourceOwners    = "owners"    // the /proc/*/fd walk for owning processes
	SourceSampler   = "sampler"   // sampling accept queues between scrapes
	SourceUnix      = "unix"      // listing UNIX listeners (unix_diag)
)

var sources = []string{SourceNamespace, SourceNetns, SourceNetstat, SourceOwners, SourceSampler, SourceSysctl, SourceUnix}

// metric is one metric family: its name, type, help and label names, the
// latter sorted as the exposition wants them.
type metric struct {
	name   string
	typ    dto.MetricType
	help   string
	labels []string
	desc   *prometheus.Desc
}

func define(name string, typ dto.MetricType, help string, labels ...string) *metric {
	name = "backlog_" + name
	return &metric{name: name, typ: typ, help: help, labels: labels, desc: prometheus.NewDesc(name, help, labels, nil)}
}

const (
	gauge   = dto.MetricType_GAUGE
	counter = dto.MetricType_COUNTER
)

// listenerLabels label every listener series, sorted. A TCP listener has
// address and port, a UNIX one path; namespace, pod and container name its
// workload as kube-state-metrics and cAdvisor do, so joins work.
// Prometheus reads the empty ones as absent. socket_inode tells apart
// sockets that share every other label: the members of a SO_REUSEPORT
// group (nginx's one socket per worker), each with its own queues.
var listenerLabels = []string{"address", "container", "family", "namespace", "netns", "path", "pod", "port", "process", "socket_inode"}

// The metrics, as docs/metrics.md lists them.
var (
	mAcceptQueue = define("listener_accept_queue", gauge,
		"Connections that finished the handshake and wait for accept(2); the kernel lets it reach backlog+1.",
		listenerLabels...)
	mAcceptQueuePeak = define("listener_accept_queue_peak", gauge,
		"Largest accept queue seen since the previous scrape, sampled between scrapes; never below the current value.",
		listenerLabels...)
	mBacklog = define("listener_backlog", gauge,
		"Effective backlog: the listen(2) backlog capped at net.core.somaxconn.",
		listenerLabels...)
	mSynQueue = define("listener_syn_queue", gauge,
		"Half-open handshakes (SYN-RECV) waiting for the client's final ACK.",
		listenerLabels...)
	mDrops = define("listener_drops_total", counter,
		"Packets the listener dropped (sk_drops), each retransmitted SYN again: not a count of refused clients.",
		listenerLabels...)

	mWorkloadInfo = define("workload_info", gauge,
		"A pod or container that owns a listener, with what does not belong on every series; always 1. Join on namespace, pod and container.",
		"container", "container_id", "namespace", "node", "pod", "pod_uid", "runtime")

	mNetnsInfo = define("netns_info", gauge,
		"A network namespace backlog reads, with its nsfs inode as lsns prints it; always 1.",
		"container", "inode", "namespace", "netns", "pod")
	mTcpExt = define("netns_tcpext_total", counter,
		"TcpExt listen counters of the namespace's /proc/net/netstat, under their kernel names.",
		"container", "counter", "namespace", "netns", "pod")
	mSysctl = define("netns_sysctl", gauge,
		"Listen-path sysctls of the namespace, under their names in net.core and net.ipv4.",
		"container", "namespace", "netns", "pod", "sysctl")

	mScrapeDuration = define("scrape_duration_seconds", gauge,
		"Time the last collection took: namespaces, sock_diag dumps, counters, sysctls and owners.")
	mScrapeErrors = define("scrape_errors_total", counter,
		"Collection errors by source; the log says what failed. A failing namespace never fails the scrape.",
		"source")
	mCollections = define("collections_total", counter,
		"Collections run; concurrent scrapes share one, so this can grow slower than scrapes.")
	mNamespaces = define("namespaces", gauge,
		"Network namespaces in the last collection, those that failed included.")
	mListeners = define("listeners", gauge,
		"Listener series in the last collection before --max-listeners.")
	mOmitted = define("listeners_omitted_total", counter,
		"Listener series left out by --max-listeners, summed over collections.")
	mSource = define("collection_source", gauge,
		"How the last collection read listeners and owners, always 1: source bpf_iter (BPF iterators) or sock_diag (sock_diag dumps and a /proc walk).",
		"source")
	mSamples = define("sampler_samples_total", counter,
		"Rounds of accept-queue sampling over every namespace.")
	mSamplerSeconds = define("sampler_seconds_total", counter,
		"Wall time spent sampling accept queues; its rate is the sampler's share of one CPU.")
)

var allMetrics = []*metric{
	mAcceptQueue, mAcceptQueuePeak, mBacklog, mSynQueue, mDrops,
	mWorkloadInfo, mNetnsInfo, mTcpExt, mSysctl,
	mScrapeDuration, mScrapeErrors, mCollections, mNamespaces, mListeners, mOmitted, mSource,
	mSamples, mSamplerSeconds,
}
