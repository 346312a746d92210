package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/testutil"
	"golang.org/x/crypto/bcrypt"
)

// server is a running `backlog serve`.
type server struct {
	cmd  *exec.Cmd
	addr string // host:port it listens on
	mu   sync.Mutex
	log  bytes.Buffer
}

func (s *server) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// listeningRe finds the address in the log, logfmt or JSON.
var listeningRe = regexp.MustCompile(`msg="Listening on" address=(\S+)|"msg":"Listening on","address":"([^"]+)"`)

// startServe runs the real binary with args on 127.0.0.1:0 and returns once
// it listens; it is ended by pid at cleanup.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	return startServeUnder(t, nil, args...)
}

// startServeUnder is startServe run through a command prefix (setpriv, ip
// netns exec).
func startServeUnder(t *testing.T, prefix []string, args ...string) *server {
	t.Helper()
	testutil.RequireRoot(t)
	argv := append(append(append([]string{}, prefix...), binary, "serve", "--web.listen-address", "127.0.0.1:0"), args...)
	s := &server{cmd: exec.Command(argv[0], argv[1:]...)}
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("backlog serve said:\n%s", s.stderr())
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := listeningRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1] + m[2]:
				default:
				}
			}
		}
	}()
	select {
	case s.addr = <-found:
	case <-time.After(time.Minute): // serve --bpf loads its programs first: seconds under emulation
		t.Fatalf("backlog serve did not start listening:\n%s", s.stderr())
	}
	return s
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// overflow makes a lab namespace with a listener of backlog 5 that never
// accepts; tests dial its clients.
func overflow(t *testing.T) (*lab.Namespace, *lab.Listener) {
	t.Helper()
	ns := labtest.Namespace(t, "bl-serve")
	return ns, labtest.Listen(t, ns, "127.0.0.1:0", 5)
}

func dial(t *testing.T, ns *lab.Namespace, l *lab.Listener, n int) {
	labtest.Dial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), n)
}

// TestServeScrapeIsClean: a real scrape of a namespace with an overflowing
// listener has every metric family and passes `promtool check metrics`.
func TestServeScrapeIsClean(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	ns, l := overflow(t)
	dial(t, ns, l, 20)
	s := startServe(t, "--netns", ns.Name)
	drops := regexp.MustCompile(fmt.Sprintf(`\nbacklog_listener_drops_total\{address="127\.0\.0\.1",container="",family="inet",namespace="",netns=%q,path="",pod="",port="%d",process="[^"]+",socket_inode="[0-9]+"\} ([0-9]+)\n`, ns.Name, l.Port))
	var body string
	testutil.Eventually(t, 5*time.Second, func() error {
		var code int
		code, body = get(t, http.DefaultClient, "http://"+s.addr+"/metrics")
		if m := drops.FindStringSubmatch(body); code != 200 || m == nil || m[1] == "0" {
			return fmt.Errorf("status %d, drops %v; want the listener with its owner and drops > 0", code, m)
		}
		return nil
	})
	for _, name := range []string{"backlog_listener_accept_queue", "backlog_listener_accept_queue_peak", "backlog_listener_backlog",
		"backlog_listener_syn_queue", "backlog_netns_info", "backlog_netns_tcpext_total", "backlog_netns_sysctl",
		"backlog_scrape_duration_seconds", "backlog_scrape_errors_total", "backlog_sampler_samples_total", "backlog_build_info",
		"go_goroutines", "process_resident_memory_bytes", "promhttp_metric_handler_requests_total"} {
		if !strings.Contains(body, "\n# TYPE "+name+" ") {
			t.Errorf("scrape lacks %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	code, landing := get(t, http.DefaultClient, "http://"+s.addr+"/")
	if code != 200 || !strings.Contains(landing, "backlog") || !strings.Contains(landing, "metrics") {
		t.Errorf("landing page: %d\n%s", code, landing)
	}
	// SIGTERM ends it cleanly.
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("still running 10 s after SIGTERM")
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"serve", "--max-listeners", "-1"}, exitUsage, "negative"},
		{[]string{"serve", "--sample.interval", "fast"}, exitUsage, "sample.interval"},
		{[]string{"serve", "--web.config.file", "/nonexistent/web.yml"}, exitFailure, "web.config.file"},
		{[]string{"serve", "--netns", "no-such-ns-" + strconv.Itoa(os.Getpid())}, exitUsage, "no namespace of that name"},
	} {
		_, stderr, code := runIn(t, "", c.args...)
		if code != c.code || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.says) {
			t.Errorf("backlog %v: exit %d, stderr %q; want exit %d and one line about %s", c.args, code, stderr, c.code, c.says)
		}
	}
}

// TestServeTLSAndBasicAuth: a web config file turns on TLS and basic auth;
// a real HTTPS client gets in with the password and only with it.
func TestServeTLSAndBasicAuth(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	certPEM := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "web.yml")
	err = os.WriteFile(config, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--netns", "self", "--web.config.file", config)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"prometheus", "s3cret", 200},
		{"prometheus", "wrong", 401},
		{"", "", 401},
	} {
		u := "https://" + s.addr + "/metrics"
		if c.user != "" {
			u = "https://" + url.UserPassword(c.user, c.pass).String() + "@" + s.addr + "/metrics"
		}
		code, body := get(t, client, u)
		if code != c.want || (c.want == 200 && !strings.Contains(body, "backlog_listener_backlog")) {
			t.Errorf("user %q password %q: status %d, want %d", c.user, c.pass, code, c.want)
		}
	}
	// Plain HTTP is refused, and a client that does not trust the
	// certificate cannot connect.
	if code, _ := get(t, http.DefaultClient, "http://"+s.addr+"/metrics"); code != http.StatusBadRequest {
		t.Errorf("plain HTTP: status %d, want 400", code)
	}
	if _, err := http.Get("https://" + s.addr + "/metrics"); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
	if !strings.Contains(s.stderr(), "TLS is enabled") {
		t.Errorf("log does not say TLS is on:\n%s", s.stderr())
	}
}

// selfSigned writes cert.pem and key.pem for 127.0.0.1 into dir and
// returns the certificate.
func selfSigned(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "backlog test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs the real Prometheus server scraping target every
// second, evaluating deploy/'s alert rules, and returns its address; it is
// ended by pid at cleanup.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	return startPrometheusWith(t, fmt.Sprintf(`  - job_name: backlog
    static_configs:
      - targets: [%q]
`, target))
}

// startPrometheusWith is startPrometheus with its scrape_configs entries.
func startPrometheusWith(t *testing.T, scrapeConfigs string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("needs the prometheus server (Debian package prometheus; scripts/test.sh installs it)")
	}
	dir := t.TempDir()
	rules, err := filepath.Abs("../../deploy/prometheus/backlog.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "prometheus.yml")
	err = os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
%s`, rules, scrapeConfigs)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var log bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // by pid: only the server this test started
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus said:\n%s", log.String())
		}
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("prometheus not ready: %s", resp.Status)
		}
		return nil
	})
	return addr
}

// query asks Prometheus for an instant vector; it returns the values.
func query(t *testing.T, prom, q string) []float64 {
	t.Helper()
	_, body := get(t, http.DefaultClient, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(q))
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s %s", q, err, r.Error, body)
	}
	var vs []float64
	for _, res := range r.Data.Result {
		s, _ := res.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v", q, res.Value)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestPrometheusEndToEnd: the real Prometheus server scrapes backlog serve
// every second while a lab overflow runs; its HTTP API then says the
// accept-queue peak is backlog+1 and drops rose, for that namespace and port.
func TestPrometheusEndToEnd(t *testing.T) {
	ns, l := overflow(t)
	s := startServe(t) // every namespace, as deployed
	prom := startPrometheus(t, s.addr)
	sel := fmt.Sprintf(`{job="backlog",netns=%q,port="%d"}`, ns.Name, l.Port)

	// First Prometheus sees the idle listener, so the rise is its to see.
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := query(t, prom, "backlog_listener_drops_total"+sel); len(v) != 1 || v[0] != 0 {
			return fmt.Errorf("drops %v, want one series at 0", v)
		}
		return nil
	})
	dial(t, ns, l, 20)

	testutil.Eventually(t, 30*time.Second, func() error {
		peak := query(t, prom, "backlog_listener_accept_queue_peak"+sel)
		backlog := query(t, prom, "backlog_listener_backlog"+sel)
		rise := query(t, prom, "increase(backlog_listener_drops_total"+sel+"[1m])")
		overflows := query(t, prom, fmt.Sprintf(`backlog_netns_tcpext_total{netns=%q,counter="ListenOverflows"}`, ns.Name))
		if len(peak) != 1 || peak[0] != 6 || len(backlog) != 1 || backlog[0] != 5 || len(rise) != 1 || rise[0] <= 0 || len(overflows) != 1 || overflows[0] <= 0 {
			return fmt.Errorf("peak %v backlog %v drops increase %v ListenOverflows %v; want 6 (backlog+1), 5, > 0, > 0", peak, backlog, rise, overflows)
		}
		t.Logf("Prometheus: peak %v, backlog %v, drops increase over 1m %v, ListenOverflows %v", peak[0], backlog[0], rise[0], overflows[0])
		return nil
	})
	if up := query(t, prom, `up{job="backlog"}`); len(up) != 1 || up[0] != 1 {
		t.Errorf("up = %v", up)
	}
	// The dashboard's queries run, and the alert rules evaluate cleanly,
	// on real data from many namespaces.
	for _, q := range dashboardQueries(t) {
		query(t, prom, q)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		_, body := get(t, http.DefaultClient, "http://"+prom+"/api/v1/rules")
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct{ Name, Health, LastError string }
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health != "ok" {
					return fmt.Errorf("rule %s: health %q %s", rule.Name, rule.Health, rule.LastError)
				}
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("no rules loaded: %s", body)
		}
		return nil
	})
	if d := query(t, prom, `scrape_duration_seconds{job="backlog"}`); len(d) == 1 {
		t.Logf("scrape_duration_seconds %.4f", d[0])
	}
}

// TestServeLeastPrivilege runs serve as root with only the capabilities the
// DaemonSet grants (deploy/kubernetes/daemonset.yaml), then without each.
// With the three it does as well as with every capability: it sees a
// listener of another user in another namespace, with its owner, and fails
// nowhere full root does not; without one, the scrape says what is missing.
func TestServeLeastPrivilege(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	ns, err := lab.NewNamespace("bl-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	// A listener owned by nobody inside ns: backlog serve itself.
	owned := startServeUnder(t, []string{"ip", "netns", "exec", ns.Name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"}, "--netns", "self")
	_, port, _ := strings.Cut(owned.addr, ":")
	series := fmt.Sprintf(`backlog_listener_backlog{address="127.0.0.1",container="",family="inet",namespace="",netns=%q,path="",pod="",port=%q,process=`, ns.Name, port)

	// scrape runs serve with only caps (nil: all of them) and returns the
	// error sources that counted, once the listener shows with process.
	scrape := func(t *testing.T, caps []string, process string, args ...string) (failing []string, body, log string) {
		t.Helper()
		var prefix []string
		if caps != nil {
			prefix = []string{"setpriv", "--bounding-set", "-all,+" + strings.Join(caps, ",+"), "--"}
		}
		s := startServeUnder(t, prefix, args...)
		testutil.Eventually(t, 5*time.Second, func() error {
			var code int
			code, body = get(t, http.DefaultClient, "http://"+s.addr+"/metrics")
			if code != 200 {
				return fmt.Errorf("status %d", code)
			}
			if process != "" && !regexp.MustCompile(regexp.QuoteMeta(series+process)+`,socket_inode="[0-9]+"\} 4096\n`).MatchString(body) {
				return fmt.Errorf("no %s%s,socket_inode=...} 4096", series, process)
			}
			return nil
		})
		for _, line := range strings.Split(body, "\n") {
			rest, ok := strings.CutPrefix(line, `backlog_scrape_errors_total{source="`)
			if src, v, ok2 := strings.Cut(rest, `"} `); ok && ok2 && v != "0" {
				failing = append(failing, src)
			}
		}
		// Namespaces of tests running beside this one vanish mid-scan:
		// left out, never an error (netns.ErrGone).
		return failing, body, s.stderr()
	}

	// Full root is the baseline: a sandbox may hide a process even from it.
	baseline, _, _ := scrape(t, nil, `"backlog"`)
	t.Logf("with every capability, errors from %v", baseline)

	all := []string{"sys_admin", "sys_ptrace", "dac_read_search"}
	for _, c := range []struct {
		drop    string
		process string   // the owner the scrape shows
		errors  []string // error sources that must count besides the baseline's
		log     string   // what the log must say once
	}{
		{"", `"backlog"`, nil, ""},
		// Processes with more capabilities than ours, pid 1 first, cannot
		// be inspected (cap_ptrace_access_check()), nor, without
		// dac_read_search, nobody's descriptors. That is the same at every
		// scrape: logged once with what it hides, never a scrape error
		// (BacklogExporterErrors would fire forever).
		{"sys_ptrace", `""`, nil, "cannot inspect"},
		{"dac_read_search", `""`, nil, "cannot inspect"},
		// Other namespaces cannot be entered, by the sampler either.
		{"sys_admin", "", []string{"namespace", "sampler"}, ""},
	} {
		if src, _ := collect.Source(); src == collect.SourceBPF && (c.drop == "sys_ptrace" || c.drop == "dac_read_search") {
			// CAP_SYS_ADMIN loads the iterators, which see every
			// process's descriptors in the kernel: owners stay known;
			// the walk of what they miss (pid 1) may still be refused
			// and logged.
			c.process, c.log = `"backlog"`, ""
		}
		t.Run("without "+c.drop, func(t *testing.T) {
			caps := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == c.drop })
			var args []string
			if c.drop == "sys_admin" {
				args = []string{"--netns", ns.Name} // asked for explicitly
			}
			failing, body, log := scrape(t, caps, c.process, args...)
			if c.log != "" && strings.Count(log, c.log) != 1 {
				t.Errorf("with %v: the log says %q %d times, want once", caps, c.log, strings.Count(log, c.log))
			}
			for _, src := range c.errors {
				if !slices.Contains(failing, src) {
					t.Errorf("with %v: no errors from %s; errors from %v", caps, src, failing)
				}
			}
			for _, src := range failing {
				if !slices.Contains(c.errors, src) && !slices.Contains(baseline, src) {
					t.Errorf("with %v: errors from %s, which full root does not have", caps, src)
				}
			}
			if c.drop == "sys_admin" && strings.Contains(body, series) {
				t.Errorf("without CAP_SYS_ADMIN the listener in %s was still read", ns.Name)
			}
		})
	}
}

// dashboardQueries returns the PromQL of every panel of the Grafana
// dashboard, with its variables set to match everything.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/backlog.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	vars := strings.NewReplacer("$instance", ".*", "$netns", ".*", "$port", ".*", "$__rate_interval", "1m")
	var qs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, vars.Replace(tg.Expr))
		}
	}
	if len(qs) < 10 {
		t.Fatalf("only %d dashboard queries", len(qs))
	}
	return qs
}

// TestServeNamespaceVanishes: the one namespace serve --netns reads is
// deleted: each scrape counts it once, as the namespace that failed (not
// also as a listing error, nor in the sampler), and the log says so once,
// with no doubled "backlog:" and no usage wording.
func TestServeNamespaceVanishes(t *testing.T) {
	ns, err := lab.NewNamespace("bl-srv-vanish")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	s := startServe(t, "--netns", ns.Name)
	url := "http://" + s.addr + "/metrics"
	if code, _ := get(t, http.DefaultClient, url); code != 200 {
		t.Fatalf("status %d", code)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	var body string
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		_, body = get(t, http.DefaultClient, url)
	}
	for src, want := range map[string]string{"netns": "0", "sampler": "0", "namespace": "3"} {
		line := fmt.Sprintf("backlog_scrape_errors_total{source=%q} %s\n", src, want)
		if !strings.Contains(body, line) {
			t.Errorf("want %q in\n%s", line, body)
		}
	}
	log := s.stderr()
	if strings.Contains(log, "backlog: backlog:") || strings.Contains(log, "bad --netns") || strings.Count(log, "went away") != 1 {
		t.Errorf("log, want the vanished namespace once:\n%s", log)
	}
}
