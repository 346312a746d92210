package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promversion "github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/exporter"
	"github.com/backlog-dev/backlog/internal/sampler"
	"github.com/backlog-dev/backlog/internal/trace"
)

// defaultListenAddress is backlog's port. Prometheus' default port
// allocations (9100-9999) are all taken; 9871 is documented in
// docs/metrics.md.
const defaultListenAddress = ":9871"

// minSampleInterval keeps the sampler from spinning: a LISTEN-only dump of
// 10,000 listeners takes 5-8 ms.
const minSampleInterval = 10 * time.Millisecond

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stdout)
	var listen addressList
	fs.Var(&listen, "web.listen-address", "`address` to serve metrics on, repeatable (default "+defaultListenAddress+")")
	configFile := fs.String("web.config.file", "", "`path` to a web configuration file enabling TLS or basic auth (exporter-toolkit format)")
	systemd := fs.Bool("web.systemd-socket", false, "serve on systemd's socket-activated listeners instead of --web.listen-address")
	path := fs.String("web.telemetry-path", "/metrics", "`path` under which metrics are served")
	maxRequests := fs.Int("web.max-requests", exporter.DefaultMaxRequests, "most scrapes served at once; 0 for no limit (scrapes share one collection)")
	noExporterMetrics := fs.Bool("web.disable-exporter-metrics", false, "leave out the go_*, process_* and promhttp_* metrics of the exporter itself")
	interval := fs.Duration("sample.interval", sampler.DefaultInterval, "how often accept queues are sampled between scrapes for the peak; 0 turns sampling off")
	maxListeners := fs.Int("max-listeners", 10000, "most listener series to export, fullest first; 0 for no limit")
	bpf := fs.Bool("bpf", false, "also export eBPF drop events by stage and accept-wait histograms per listener (needs CAP_BPF and CAP_PERFMON, docs/trace.md)")
	level := levelFlag{promslog.NewLevel()}
	fs.Var(&level, "log.level", "log only messages at or above this `level`: debug, info, warn or error")
	format := promslog.NewFormat()
	format.Set("logfmt")
	fs.Var(format, "log.format", "log `format`: logfmt or json")
	var filters filterFlags
	filters.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *interval < 0 || *maxListeners < 0 || *maxRequests < 0 {
		return usageError{fmt.Errorf("backlog serve: --sample.interval, --max-listeners and --web.max-requests cannot be negative")}
	}
	if len(listen) == 0 {
		listen = addressList{defaultListenAddress}
	}
	for i, a := range listen {
		if err := checkListenAddress(a); err != nil {
			return err
		}
		if !strings.HasSuffix(a, ":0") && slices.Contains(listen[:i], a) {
			return usageError{fmt.Errorf("backlog serve: --web.listen-address %s is given twice", a)}
		}
	}
	if *interval > 0 && *interval < minSampleInterval {
		return usageError{fmt.Errorf("backlog serve: --sample.interval %v: want 0 (off) or at least %v; one sample of every listener takes milliseconds", *interval, minSampleInterval)}
	}
	if err := checkTelemetryPath(*path); err != nil {
		return err
	}
	if *configFile != "" {
		// A device or FIFO would be read forever into memory.
		if st, err := os.Stat(*configFile); err == nil && !st.Mode().IsRegular() {
			return fmt.Errorf("--web.config.file %s: not a regular file; give the path of a YAML file", *configFile)
		}
		if err := web.Validate(*configFile); err != nil {
			return fmt.Errorf("--web.config.file %s: %w; see https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md", *configFile, err)
		}
	}
	// Resolve once now so that a bad --netns is a usage error at start.
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	if *bpf {
		// Say what is missing before anything listens.
		if err := trace.Check(); err != nil {
			return fmt.Errorf("--bpf: %w", err)
		}
	}
	// Listen before logging anything: a port that cannot be had is the
	// one line a person sees.
	listeners, err := openListeners(listen, *systemd)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	var tr *trace.Tracer
	if *bpf {
		if tr, err = trace.New(traceOptions(&filters, opts)); err != nil {
			return fmt.Errorf("--bpf: %w", err)
		}
		defer tr.Close()
	}
	logger := promslog.New(&promslog.Config{Level: level.Level, Format: format, Writer: stderr})
	// Libraries that log through the standard log package, and the HTTP
	// server's own errors (TLS handshakes), come out in the same format.
	slog.SetDefault(logger)
	if warning != "" {
		logger.Warn(warning) // the exporter logs it again only if it changes
	}

	var smp *sampler.Sampler
	if *interval > 0 {
		smp = sampler.New(sampler.Options{
			Interval: *interval,
			Resolve: func() ([]collect.Target, error) {
				o, _, err := filters.options()
				return o.Targets, err
			},
			Logger: logger,
			NoBPF:  filters.noBPF,
		})
		done := make(chan struct{})
		sctx, stop := context.WithCancel(ctx)
		go func() { smp.Run(sctx); close(done) }()
		defer func() { stop(); <-done }()
	}
	exp := exporter.New(exporter.Options{Resolve: filters.options, Note: warning, Sampler: smp, MaxListeners: *maxListeners, Logger: logger})

	promversion.Version = version
	// The exporter is gathered beside the registry, not in it: its families
	// are consistent by construction, and the registry's per-sample checks
	// would double the scrape time at 10,000 listeners.
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("backlog"))
	if tr != nil {
		go func() {
			if err := tr.Run(ctx, nil); err != nil {
				logger.Error("eBPF tracing stopped", "err", err)
			}
		}()
		for _, w := range tr.Warnings() {
			logger.Warn(w)
		}
		tc := exporter.NewTraceCollector(tr.Stats, logger)
		tc.Workloads = filters.workloads()
		tc.Names = exp.NetnsName // the exporter is gathered first (below)
		tc.SetMissing(tr.Missing())
		reg.MustRegister(tc)
	}
	// exp first: the trace series name namespaces from its collection.
	var metrics http.Handler = exporter.Handler(logger, *maxRequests, exp, reg)
	if !*noExporterMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		metrics = promhttp.InstrumentMetricHandler(reg, metrics)
	}
	mux := http.NewServeMux()
	mux.Handle(*path, metrics)
	if *path != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "backlog",
			Description: "Linux TCP listen queues: accept and SYN queues, drops and their namespace's counters",
			Version:     version,
			Links:       []web.LandingLinks{{Address: *path, Text: "Metrics"}},
			Profiling:   "false", // /debug/pprof is not served
		})
		if err != nil {
			return fmt.Errorf("building the landing page: %w", err)
		}
		mux.Handle("/", landing)
	}

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server.Shutdown(sctx)
	}()
	logger.Info("starting backlog serve", "version", version, "sample_interval", *interval, "max_listeners", *maxListeners)
	addrs := []string(listen)
	err = web.ServeMultiple(listeners, server, &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: systemd, WebConfigFile: configFile}, logger)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return fmt.Errorf("serving metrics: %w", err)
}

// levelFlag is promslog's level as a flag whose zero value prints: the
// flag package calls String on one to show defaults, and promslog.Level's
// panics.
type levelFlag struct{ *promslog.Level }

func (l *levelFlag) String() string {
	if l.Level == nil {
		return ""
	}
	return l.Level.String()
}

// addressList is a repeatable --web.listen-address.
type addressList []string

func (a *addressList) String() string { return fmt.Sprint(*a) }
func (a *addressList) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty address; want host:port, such as %s", defaultListenAddress)
	}
	*a = append(*a, s)
	return nil
}
