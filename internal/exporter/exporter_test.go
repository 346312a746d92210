package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

func ptr[T any](v T) *T { return &v }

// fake builds an exporter over a fixed snapshot.
func fake(snap *snapshot.Snapshot, err error, opts Options) *Exporter {
	if opts.Resolve == nil {
		opts.Resolve = func() (collect.Options, string, error) { return collect.Options{}, "", nil }
	}
	opts.collect = func(context.Context, collect.Options) (*snapshot.Snapshot, error) { return snap, err }
	return New(opts)
}

func listener(netns uint64, addr string, port uint16, inode uint32, q, backlog uint32, drops uint64, comm string) snapshot.Listener {
	a := netip.MustParseAddr(addr)
	l := snapshot.Listener{Netns: netns, Family: snapshot.FamilyInet, Address: a, Port: port, Inode: inode,
		AcceptQueue: q, Backlog: backlog, Drops: &drops, Processes: []snapshot.Process{}}
	if a.Is6() {
		l.Family = snapshot.FamilyInet6
	}
	if comm != "" {
		l.Processes = []snapshot.Process{{PID: int(inode), Comm: comm}}
	}
	return l
}

func twoNamespaces() *snapshot.Snapshot {
	return &snapshot.Snapshot{
		Namespaces: []snapshot.Namespace{
			{Inode: 1, Name: "host", Sysctls: snapshot.Sysctls{Somaxconn: ptr[int64](4096)},
				Counters: snapshot.Counters{ListenOverflows: ptr[uint64](7), ListenDrops: ptr[uint64](7)}},
			{Inode: 2, Name: "pod:1234", Sysctls: snapshot.Sysctls{Somaxconn: ptr[int64](128)},
				Workload: &snapshot.Workload{Namespace: "shop", Pod: "web-0", PodUID: "1234", Runtime: "containerd", Node: "n1"}},
		},
		Listeners: []snapshot.Listener{
			// Two SO_REUSEPORT sockets of nginx, one full.
			listener(1, "0.0.0.0", 80, 10, 129, 128, 5, "nginx"),
			listener(1, "0.0.0.0", 80, 11, 3, 511, 2, "nginx"),
			withWorkload(listener(2, "0.0.0.0", 80, 12, 0, 128, 0, ""), &snapshot.Workload{
				Namespace: "shop", Pod: "web-0", PodUID: "1234", Container: "nginx", ContainerID: "abc", Runtime: "containerd", Node: "n1"}),
			listener(1, "::", 22, 13, 0, 128, 0, "sshd"),
		},
	}
}

func withWorkload(l snapshot.Listener, w *snapshot.Workload) snapshot.Listener {
	l.Workload = w
	return l
}

func TestMetricsAndReuseport(t *testing.T) {
	e := fake(twoNamespaces(), nil, Options{})
	want := `
# HELP backlog_listener_accept_queue Connections that finished the handshake and wait for accept(2); the kernel lets it reach backlog+1.
# TYPE backlog_listener_accept_queue gauge
backlog_listener_accept_queue{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="10"} 129
backlog_listener_accept_queue{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="11"} 3
backlog_listener_accept_queue{address="0.0.0.0",container="nginx",family="inet",namespace="shop",netns="pod:1234",path="",pod="web-0",port="80",process="",socket_inode="12"} 0
backlog_listener_accept_queue{address="::",container="",family="inet6",namespace="",netns="host",path="",pod="",port="22",process="sshd",socket_inode="13"} 0
# HELP backlog_listener_backlog Effective backlog: the listen(2) backlog capped at net.core.somaxconn.
# TYPE backlog_listener_backlog gauge
backlog_listener_backlog{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="10"} 128
backlog_listener_backlog{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="11"} 511
backlog_listener_backlog{address="0.0.0.0",container="nginx",family="inet",namespace="shop",netns="pod:1234",path="",pod="web-0",port="80",process="",socket_inode="12"} 128
backlog_listener_backlog{address="::",container="",family="inet6",namespace="",netns="host",path="",pod="",port="22",process="sshd",socket_inode="13"} 128
# HELP backlog_listener_drops_total Packets the listener dropped (sk_drops), each retransmitted SYN again: not a count of refused clients.
# TYPE backlog_listener_drops_total counter
backlog_listener_drops_total{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="10"} 5
backlog_listener_drops_total{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="11"} 2
backlog_listener_drops_total{address="0.0.0.0",container="nginx",family="inet",namespace="shop",netns="pod:1234",path="",pod="web-0",port="80",process="",socket_inode="12"} 0
backlog_listener_drops_total{address="::",container="",family="inet6",namespace="",netns="host",path="",pod="",port="22",process="sshd",socket_inode="13"} 0
# HELP backlog_netns_tcpext_total TcpExt listen counters of the namespace's /proc/net/netstat, under their kernel names.
# TYPE backlog_netns_tcpext_total counter
backlog_netns_tcpext_total{container="",counter="ListenDrops",namespace="",netns="host",pod=""} 7
backlog_netns_tcpext_total{container="",counter="ListenOverflows",namespace="",netns="host",pod=""} 7
# HELP backlog_netns_sysctl Listen-path sysctls of the namespace, under their names in net.core and net.ipv4.
# TYPE backlog_netns_sysctl gauge
backlog_netns_sysctl{container="",namespace="",netns="host",pod="",sysctl="somaxconn"} 4096
backlog_netns_sysctl{container="",namespace="shop",netns="pod:1234",pod="web-0",sysctl="somaxconn"} 128
# HELP backlog_netns_info A network namespace backlog reads, with its nsfs inode as lsns prints it; always 1.
# TYPE backlog_netns_info gauge
backlog_netns_info{container="",inode="1",namespace="",netns="host",pod=""} 1
backlog_netns_info{container="",inode="2",namespace="shop",netns="pod:1234",pod="web-0"} 1
# HELP backlog_workload_info A pod or container that owns a listener, with what does not belong on every series; always 1. Join on namespace, pod and container.
# TYPE backlog_workload_info gauge
backlog_workload_info{container="nginx",container_id="abc",namespace="shop",node="n1",pod="web-0",pod_uid="1234",runtime="containerd"} 1
`
	names := []string{"backlog_listener_accept_queue", "backlog_listener_backlog", "backlog_listener_drops_total",
		"backlog_netns_tcpext_total", "backlog_netns_sysctl", "backlog_netns_info", "backlog_workload_info"}
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(e)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// TestFailuresBySource: what fails is counted by source and the rest is
// still served.
func TestFailuresBySource(t *testing.T) {
	snap := twoNamespaces()
	snap.Namespaces = append(snap.Namespaces,
		snapshot.Namespace{Inode: 3, Name: "gone", Error: "vanished before it could be read"},
		snapshot.Namespace{Inode: 4, Name: "half", Error: "partly read: procnet: no netstat",
			Sysctls: snapshot.Sysctls{Somaxconn: ptr[int64](5)}},
	)
	snap.Warnings = []string{"owners hidden: ..."}
	calls := 0
	e := fake(snap, nil, Options{Resolve: func() (collect.Options, string, error) {
		calls++
		if calls == 2 {
			return collect.Options{}, "", errors.New("cannot list /proc")
		}
		return collect.Options{}, "", nil
	}})
	for range 2 {
		testutil.CollectAndCount(e)
	}
	// CollectAndCompare collects a third time.
	want := errorsText(map[string]int{"namespace": 3, "netns": 1, "netstat": 3, "owners": 3}) + `# HELP backlog_namespaces Network namespaces in the last collection, those that failed included.
# TYPE backlog_namespaces gauge
backlog_namespaces 4
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "backlog_scrape_errors_total", "backlog_namespaces"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(e, "backlog_listener_backlog"); n != 4 {
		t.Errorf("%d listener series, want 4 despite the failures", n)
	}

	// Nothing readable at all: only the exporter's own series.
	e = fake(nil, collect.ErrNoNamespace, Options{})
	if n := testutil.CollectAndCount(e, "backlog_listener_backlog"); n != 0 {
		t.Errorf("%d listener series from a failed collection", n)
	}
	testutil.CollectAndCount(e)
	want = errorsText(map[string]int{"namespace": 3})
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "backlog_scrape_errors_total"); err != nil {
		t.Error(err)
	}
}

// TestRefusalsAreNotErrors: processes the kernel refuses to inspect, and a
// default narrowed for lack of privilege, are the same at every scrape:
// logged once (again when they change), never counted as scrape errors,
// which would keep BacklogExporterErrors firing forever.
func TestRefusalsAreNotErrors(t *testing.T) {
	snap := twoNamespaces()
	snap.Hidden = []snapshot.Hidden{{PID: 1, Comm: "init", Errno: "EACCES", Owners: true}}
	var log strings.Builder
	note := "reading other network namespaces needs root or CAP_SYS_ADMIN; showing this namespace (host) only"
	e := fake(snap, nil, Options{
		Logger:  slog.New(slog.NewTextHandler(&log, nil)),
		Resolve: func() (collect.Options, string, error) { return collect.Options{}, note, nil },
	})
	for range 3 {
		testutil.CollectAndCount(e)
	}
	if err := testutil.CollectAndCompare(e, strings.NewReader(errorsText(nil)), "backlog_scrape_errors_total"); err != nil {
		t.Error(err)
	}
	if n := strings.Count(log.String(), "pid 1 (init)"); n != 1 {
		t.Errorf("the refused process logged %d times in 4 scrapes, want once:\n%s", n, log.String())
	}
	if n := strings.Count(log.String(), "CAP_SYS_ADMIN"); n != 1 {
		t.Errorf("the note logged %d times in 4 scrapes, want once:\n%s", n, log.String())
	}
	snap.Hidden = append(snap.Hidden, snapshot.Hidden{PID: 7, Comm: "sshd", Errno: "EACCES", Owners: true})
	testutil.CollectAndCount(e)
	if !strings.Contains(log.String(), "pid 7 (sshd)") {
		t.Errorf("a new refused process is not logged:\n%s", log.String())
	}
}

// TestVanishedNamespaceCountedOnce: a --netns namespace that resolved once
// and then went away fails as that namespace, once a scrape, not also as a
// listing error.
func TestVanishedNamespaceCountedOnce(t *testing.T) {
	calls := 0
	e := fake(nil, collect.ErrNoNamespace, Options{Resolve: func() (collect.Options, string, error) {
		calls++
		if calls > 1 {
			return collect.Options{}, "", fmt.Errorf("%w \"blue\": no namespace of that name", collect.ErrBadSpec)
		}
		return collect.Options{Targets: []collect.Target{{Path: "/run/netns/blue", Name: "blue"}}}, "", nil
	}})
	for range 3 {
		testutil.CollectAndCount(e)
	}
	// The fourth collection is CollectAndCompare's own.
	if err := testutil.CollectAndCompare(e, strings.NewReader(errorsText(map[string]int{"namespace": 4})), "backlog_scrape_errors_total"); err != nil {
		t.Error(err)
	}
}

// errorsText is backlog_scrape_errors_total in the exposition format, with
// these counts and 0 for the other sources.
func errorsText(counts map[string]int) string {
	var b strings.Builder
	b.WriteString("# HELP " + mScrapeErrors.name + " " + mScrapeErrors.help + "\n# TYPE " + mScrapeErrors.name + " counter\n")
	for _, s := range sources {
		fmt.Fprintf(&b, "%s{source=%q} %d\n", mScrapeErrors.name, s, counts[s])
	}
	return b.String()
}

func TestMaxListeners(t *testing.T) {
	e := fake(twoNamespaces(), nil, Options{MaxListeners: 2})
	testutil.CollectAndCount(e)
	want := `
# HELP backlog_listeners Listener series in the last collection before --max-listeners.
# TYPE backlog_listeners gauge
backlog_listeners 4
# HELP backlog_listeners_omitted_total Listener series left out by --max-listeners, summed over collections.
# TYPE backlog_listeners_omitted_total counter
backlog_listeners_omitted_total 4
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "backlog_listeners", "backlog_listeners_omitted_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(e, "backlog_listener_accept_queue"); n != 2 {
		t.Errorf("%d series, want 2", n)
	}
}

// TestOneCollectionAtATime: scrapes that arrive during a collection join
// it instead of starting their own.
func TestOneCollectionAtATime(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	e := New(Options{
		Resolve: func() (collect.Options, string, error) { return collect.Options{}, "", nil },
		collect: func(context.Context, collect.Options) (*snapshot.Snapshot, error) {
			started <- struct{}{}
			<-release
			return twoNamespaces(), nil
		},
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
		})
	}
	<-started
	time.Sleep(200 * time.Millisecond) // the other gathers arrive and wait
	close(release)
	wg.Wait()
	if e.maxActive.Load() != 1 {
		t.Errorf("%d collections ran at once", e.maxActive.Load())
	}
	if e.collections >= 50 {
		t.Errorf("%d collections for 50 concurrent gathers: they did not share", e.collections)
	}
}

// TestGatherEqualsCollect: serve's fast path gives what a pedantic registry
// makes of Collect, which also checks every sample against Describe.
func TestGatherEqualsCollect(t *testing.T) {
	e := fake(twoNamespaces(), nil, Options{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	text := func(g prometheus.Gatherer) string {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mf := range mfs {
			switch mf.GetName() {
			case "backlog_scrape_duration_seconds", "backlog_collections_total": // differ by design
				continue
			}
			if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
		return b.String()
	}
	viaRegistry, direct := text(reg), text(e)
	if viaRegistry != direct {
		t.Errorf("registry:\n%s\ndirect:\n%s", viaRegistry, direct)
	}
	if !strings.Contains(direct, `backlog_listener_accept_queue_peak{address="0.0.0.0",container="",family="inet",namespace="",netns="host",path="",pod="",port="80",process="nginx",socket_inode="10"} 129`) {
		t.Errorf("peak missing:\n%s", direct)
	}
}

// TestTraceSeriesNameNamespacesAlike: serve --bpf's trace series name a
// namespace as the listener series of the same scrape do, also one the
// tracer did not know (created after it started), and inode:N only for one
// the collection did not read.
func TestTraceSeriesNameNamespacesAlike(t *testing.T) {
	e := fake(twoNamespaces(), nil, Options{})
	testutil.CollectAndCount(e)
	stats := []trace.ListenerStats{
		{ListenerID: trace.ListenerID{Netns: 2, Listener: netip.MustParseAddrPort("0.0.0.0:80")}, Drops: map[trace.Stage]uint64{trace.StageSyn: 3}},
		{ListenerID: trace.ListenerID{Netns: 1, Listener: netip.MustParseAddrPort("0.0.0.0:80")}, Namespace: "host", Drops: map[trace.Stage]uint64{trace.StageSyn: 1}},
		{ListenerID: trace.ListenerID{Netns: 9, Listener: netip.MustParseAddrPort("0.0.0.0:80")}, Drops: map[trace.Stage]uint64{trace.StageSyn: 2}},
	}
	tc := NewTraceCollector(func() ([]trace.ListenerStats, error) { return stats, nil }, slog.New(slog.DiscardHandler))
	tc.Names = e.NetnsName
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tc)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != nameDropEvents {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "netns" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if want := map[string]float64{"pod:1234": 3, "host": 1, "inode:9": 2}; !maps.Equal(got, want) {
		t.Errorf("drop events by netns %v, want %v", got, want)
	}
}
