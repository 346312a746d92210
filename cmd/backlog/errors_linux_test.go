package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/testutil"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runTo runs the real binary with stdout on f and returns its stderr and
// exit code; it is killed after 30 s.
func runTo(t *testing.T, f *os.File, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var e bytes.Buffer
	if f != nil {
		cmd.Stdout = f
	}
	cmd.Stderr = &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("backlog %v did not end in 30 s; stderr %q", args, e.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return e.String(), 0
}

// oneLine fails unless s is exactly one line with none of a Go crash's
// words.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	s = strings.TrimSpace(s)
	if s == "" || strings.Contains(s, "\n") || strings.Contains(s, "panic") || strings.Contains(s, "goroutine") {
		t.Errorf("%s: stderr %q; want one line", what, s)
	}
}

// TestWriteErrors: output that cannot be written is a failure with one
// line, for every command that writes output, and a command that streams
// stops at once.
func TestWriteErrors(t *testing.T) {
	testutil.HostOnly(t)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	cases := [][]string{
		{"version"}, {"help"}, {"ls", "-h"}, {"lab", "-h"},
		{"ls", "--netns", "self"}, {"ls", "--netns", "self", "--json"},
		{"top", "--netns", "self", "--json"}, // runs until interrupted otherwise
		{"doctor", "--netns", "self", "--duration", "1s"},
		{"doctor", "--netns", "self", "--duration", "1s", "--json"},
		{"report", recording(t)}, {"report", recording(t), "--openmetrics"},
	}
	if os.Geteuid() == 0 {
		// A report small enough to fit the buffer meets the error only
		// when it is flushed: a namespace with no listener.
		small := filepath.Join(t.TempDir(), "small.blr")
		if out, err := exec.Command(binary, "record", "--netns", labtest.Namespace(t, "bl-small").Name, "--duration", "2s", "--output", small).CombinedOutput(); err != nil {
			t.Fatalf("record: %v\n%s", err, out)
		}
		cases = append(cases, []string{"report", small, "--openmetrics"})
	}
	for _, args := range cases {
		stderr, code := runTo(t, full, args...)
		if code != exitFailure || !strings.Contains(stderr, "backlog: writing the output: write /dev/stdout: no space left on device") {
			t.Errorf("backlog %v > /dev/full: exit %d, stderr %q; want exit 1 and the write error", args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "writing the output") || strings.Count(stderr, "writing the output") != 1 {
			t.Errorf("backlog %v > /dev/full: the write error is not said once, last: %q", args, stderr)
		}
	}
}

// TestServeBadFlags: a bad serve flag is one line and exit 2 before
// anything listens or logs; -h shows every flag without a panic.
func TestServeBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--web.telemetry-path", "metrics"}, "does not start with /"},
		{[]string{"--web.telemetry-path", ""}, "does not start with /"},
		{[]string{"--web.telemetry-path", "/m{x"}, "'{' is not allowed"},
		{[]string{"--web.telemetry-path", "/a b"}, "' ' is not allowed"},
		{[]string{"--web.telemetry-path", "/a/../b"}, "not clean"},
		{[]string{"--web.listen-address", "notanaddress"}, "missing port in address"},
		{[]string{"--web.listen-address", ":99999"}, "invalid port"},
		{[]string{"--web.listen-address", "[::1"}, "missing ']'"},
		{[]string{"--web.listen-address", ":19871", "--web.listen-address", ":19871"}, "given twice"},
		{[]string{"--sample.interval", "1ns"}, "at least 10ms"},
		{[]string{"--log.level", "loud"}, "log.level"},
		{[]string{"--log.format", "xml"}, "log.format"},
	} {
		stderr, code := runTo(t, nil, append([]string{"serve", "--netns", "self"}, c.args...)...)
		oneLine(t, fmt.Sprint(c.args), stderr)
		if code != exitUsage || !strings.Contains(stderr, c.says) {
			t.Errorf("serve %v: exit %d, stderr %q; want exit 2 and %q", c.args, code, stderr, c.says)
		}
	}
	out, err := exec.Command(binary, "serve", "-h").CombinedOutput()
	if err != nil || strings.Contains(string(out), "panic") || !strings.Contains(string(out), "(default info)") {
		t.Errorf("serve -h: %v\n%s", err, out)
	}
}

// TestServeListenErrors: a listen that fails says why in one line, exit 1,
// with nothing logged before it.
func TestServeListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		prefix []string
		args   []string
		says   string
	}{
		{nil, []string{"--web.listen-address", busy.Addr().String()}, "another socket listens there"},
		{nil, []string{"--web.listen-address", "192.0.2.1:9871"}, "no interface in this network namespace has that address"},
		{nil, []string{"--web.listen-address", "no-such-host.invalid:9871"}, `cannot resolve "no-such-host.invalid"`},
		{nil, []string{"--web.systemd-socket"}, "systemd passed no listening TCP socket"},
	}
	if os.Geteuid() == 0 && hasTool("setpriv") {
		cases = append(cases, struct {
			prefix []string
			args   []string
			says   string
		}{[]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"},
			[]string{"--web.listen-address", "127.0.0.1:1"}, "need root or CAP_NET_BIND_SERVICE"})
	} else {
		t.Log("not checking permission denied: needs root and setpriv")
	}
	for _, c := range cases {
		argv := append(append(append([]string{}, c.prefix...), binary, "serve", "--netns", "self"), c.args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "LISTEN_PID=", "LISTEN_FDS=")
		out, err := cmd.CombinedOutput()
		ee, _ := err.(*exec.ExitError)
		oneLine(t, fmt.Sprint(c.args), string(out))
		if ee == nil || ee.ExitCode() != exitFailure || !strings.Contains(string(out), c.says) {
			t.Errorf("serve %v: %v, output %q; want exit 1 and %q", c.args, err, out, c.says)
		}
	}
}

func hasTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// TestServeSystemdSocket: with --web.systemd-socket, serve takes the
// socket systemd (here systemd-socket-activate) passes and serves on it.
func TestServeSystemdSocket(t *testing.T) {
	tool := testutil.RequireTool(t, "systemd-socket-activate")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(tool, "-l", addr, binary, "serve", "--netns", "self", "--web.systemd-socket")
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	testutil.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "backlog_build_info") {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// TestServeJSONLog: with --log.format json every line on stderr is JSON,
// the HTTP server's own errors (a failed TLS handshake) included.
func TestServeJSONLog(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	selfSigned(t, dir)
	config := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--netns", "self", "--log.format", "json", "--web.config.file", config)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\n")) // not a TLS record
	c.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(s.stderr(), "TLS handshake error") {
			return fmt.Errorf("no TLS handshake error logged")
		}
		return nil
	})
	for _, line := range strings.Split(strings.TrimSpace(s.stderr()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil || v["msg"] == nil || v["level"] == nil {
			t.Errorf("not a JSON log line: %q", line)
		}
	}
}

// TestServeLandingLinks: every link of the landing page that points at
// the exporter itself answers 200, with a telemetry path of its own.
func TestServeLandingLinks(t *testing.T) {
	s := startServe(t, "--netns", "self", "--web.telemetry-path", "/custom/metrics")
	base, _ := url.Parse("http://" + s.addr + "/")
	code, page := get(t, http.DefaultClient, base.String())
	if code != 200 {
		t.Fatalf("landing page: status %d", code)
	}
	var local []string
	for _, m := range regexp.MustCompile(`(?:href|src|action)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		u, err := base.Parse(m[1])
		if err != nil {
			t.Errorf("link %q: %v", m[1], err)
			continue
		}
		if u.Host == base.Host {
			local = append(local, u.String())
		}
	}
	if !slices.ContainsFunc(local, func(u string) bool { return strings.HasSuffix(u, "/custom/metrics") }) {
		t.Errorf("no link to /custom/metrics among %v", local)
	}
	for _, u := range local {
		if code, _ := get(t, http.DefaultClient, u); code != 200 {
			t.Errorf("landing page links %s: status %d", u, code)
		}
	}
}

// TestHelpShowsEveryFlag: -h of every command exits 0 and prints its flags
// without a panic (the flag package calls String on zero values).
func TestHelpShowsEveryFlag(t *testing.T) {
	for _, c := range commands() {
		args := []string{c.name, "-h"}
		if c.name == "lab" {
			args = []string{"lab", "overflow", "-h"}
		}
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "panic") || !strings.Contains(string(out), "Usage") {
			t.Errorf("backlog %v: %v\n%s", args, err, out)
		}
	}
}

// recording makes a two-second recording of the caller's namespace.
func recording(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rec.blr")
	if out, err := exec.Command(binary, "record", "--netns", "self", "--duration", "2s", "--output", path).CombinedOutput(); err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	return path
}

// TestNotARegularFile: a device or FIFO given as a recording or a web
// config is refused at once with one line, not read forever into memory
// (serve --web.config.file /dev/full grew to 16 GB).
func TestNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"report", fifo}, {"ls", "--from", fifo, "--at", "03:00:00"}, {"doctor", "--from", fifo}, {"top", "--replay", fifo},
	} {
		stderr, code := runTo(t, nil, args...)
		oneLine(t, fmt.Sprint(args), stderr)
		if code != exitFailure || !strings.Contains(stderr, "is not a file or a directory of recordings") {
			t.Errorf("backlog %v: exit %d, stderr %q", args, code, stderr)
		}
	}
	stderr, code := runTo(t, nil, "serve", "--netns", "self", "--web.listen-address", "127.0.0.1:0", "--web.config.file", fifo)
	oneLine(t, "serve --web.config.file FIFO", stderr)
	if code != exitFailure || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("serve --web.config.file FIFO: exit %d, stderr %q", code, stderr)
	}
}
