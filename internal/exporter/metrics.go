package exporter

import "github.com/prometheus/client_golang/prometheus"

// Label names. Listener series carry listenerLabels; namespace series carry
// netns plus the label naming the value.
var listenerLabels = []string{"netns", "address", "port", "process"}

// Error sources, the values of backlog_scrape_errors_total's source label.
const (
	SourceNetns     = "netns"     // listing the namespaces to read
	SourceNamespace = "namespace" // reading a namespace; its listeners are missing
	SourceNetstat   = "netstat"   // its TcpExt counters
	SourceSysctl    = "sysctl"    // its sysctls
	SourceOwners    = "owners"    // the /proc/*/fd walk for owning processes
	SourceSampler   = "sampler"   // sampling accept queues between scrapes
)

var sources = []string{SourceNetns, SourceNamespace, SourceNetstat, SourceSysctl, SourceOwners, SourceSampler}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("backlog_"+name, help, labels, nil)
}

// The metrics, as docs/metrics.md lists them.
var (
	descAcceptQueue = desc("listener_accept_queue",
		"Connections that finished the handshake and wait for accept(2); the kernel lets it reach backlog+1.",
		listenerLabels...)
	descAcceptQueuePeak = desc("listener_accept_queue_peak",
		"Largest accept queue seen since the previous scrape, sampled between scrapes; never below the current value.",
		listenerLabels...)
	descBacklog = desc("listener_backlog",
		"Effective backlog: the listen(2) backlog capped at net.core.somaxconn.",
		listenerLabels...)
	descSynQueue = desc("listener_syn_queue",
		"Half-open handshakes (SYN-RECV) waiting for the client's final ACK.",
		listenerLabels...)
	descDrops = desc("listener_drops_total",
		"Packets the listener dropped (sk_drops), each retransmitted SYN again: not a count of refused clients.",
		listenerLabels...)

	descNetnsInfo = desc("netns_info",
		"A network namespace backlog reads, with its nsfs inode as lsns prints it; always 1.",
		"netns", "inode")
	descTcpExt = desc("netns_tcpext_total",
		"TcpExt listen counters of the namespace's /proc/net/netstat, under their kernel names.",
		"netns", "counter")
	descSysctl = desc("netns_sysctl",
		"Listen-path sysctls of the namespace, under their names in net.core and net.ipv4.",
		"netns", "sysctl")

	descScrapeDuration = desc("scrape_duration_seconds",
		"Time the last collection took: namespaces, sock_diag dumps, counters, sysctls and owners.")
	descScrapeErrors = desc("scrape_errors_total",
		"Collection errors by source; the log says what failed. A failing namespace never fails the scrape.",
		"source")
	descCollections = desc("collections_total",
		"Collections run; concurrent scrapes share one, so this can grow slower than scrapes.")
	descNamespaces = desc("namespaces",
		"Network namespaces in the last collection, those that failed included.")
	descListeners = desc("listeners",
		"Listener series in the last collection before --max-listeners.")
	descOmitted = desc("listeners_omitted_total",
		"Listener series left out by --max-listeners, summed over collections.")
	descSamples = desc("sampler_samples_total",
		"Rounds of accept-queue sampling over every namespace.")
	descSamplerSeconds = desc("sampler_seconds_total",
		"Wall time spent sampling accept queues; its rate is the sampler's share of one CPU.")
)

var allDescs = []*prometheus.Desc{
	descAcceptQueue, descAcceptQueuePeak, descBacklog, descSynQueue, descDrops,
	descNetnsInfo, descTcpExt, descSysctl,
	descScrapeDuration, descScrapeErrors, descCollections, descNamespaces, descListeners, descOmitted,
	descSamples, descSamplerSeconds,
}
