package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// fpmBacklog is php-fpm's listen.backlog in TestPHPFPMBehindNginx.
const fpmBacklog = 4

// TestPHPFPMBehindNginx drives servers no one here wrote: Debian's php-fpm
// listening on a UNIX socket with listen.backlog 4, behind nginx with
// fastcgi_pass unix:..., in a namespace this test makes. With the pool
// stopped (SIGSTOP) a burst of requests fills the socket's accept queue to
// backlog+1; nginx answers the rest 502 with "Resource temporarily
// unavailable". ls shows the socket full with php-fpm as owner, doctor
// says so with php-fpm's own knob, serve exports it and a real Prometheus
// scrape sees one series for it.
func TestPHPFPMBehindNginx(t *testing.T) {
	testutil.RequireRoot(t)
	fpm := testutil.RequireTool(t, "php-fpm8.2")
	nginx := testutil.RequireTool(t, "nginx")
	ns := labtest.Namespace(t, "bl-fpm")
	dir, err := os.MkdirTemp("/run", "bl-fpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "php-fpm.sock")
	port := freePort(t)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("index.php", "<?php echo \"ok\";\n")
	fpmConf := write("php-fpm.conf", fmt.Sprintf(`[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm.log
daemonize = no
[www]
user = root
group = root
listen = %[2]s
listen.backlog = %[3]d
pm = static
pm.max_children = 1
`, dir, sock, fpmBacklog))
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	nginxConf := write("nginx.conf", fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log error;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME %[1]s/index.php;
      fastcgi_connect_timeout 2s;
      fastcgi_read_timeout 2s;
      fastcgi_pass unix:%[3]s;
    }
  }
}
`, dir, port, sock))

	fpmCmd := startDaemon(t, "ip", "netns", "exec", ns.Name, fpm, "-R", "-F", "-y", fpmConf)
	testutil.Eventually(t, 15*time.Second, func() error {
		if _, err := os.Stat(sock); err != nil {
			return fmt.Errorf("php-fpm has no socket yet: %v", err)
		}
		return nil
	})
	startDaemon(t, "ip", "netns", "exec", ns.Name, nginx, "-c", nginxConf, "-p", dir)
	client := nsHTTPClient(ns)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testutil.Eventually(t, 15*time.Second, func() error {
		code, body, err := httpGet(client, url)
		if err != nil || code != 200 || body != "ok" {
			return fmt.Errorf("GET %s: %d %q %v, want 200 ok", url, code, body, err)
		}
		return nil
	})

	// Stop the whole pool (master and worker): nothing accepts.
	pool := descendants(fpmCmd.Process.Pid)
	for _, pid := range pool {
		syscall.Kill(pid, syscall.SIGSTOP) // by pid: processes this test started
	}
	t.Cleanup(func() {
		for _, pid := range pool {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	const requests = 20
	codes := make(chan int, requests)
	var wg sync.WaitGroup
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := httpGet(client, url)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	// backlog+1 connections wait in the queue until nginx gives up (504);
	// the others were refused at once (502).
	if count[502] != requests-(fpmBacklog+1) || count[504] != fpmBacklog+1 {
		t.Errorf("nginx answered %v, want %d x 502 and %d x 504", count, requests-(fpmBacklog+1), fpmBacklog+1)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "nginx-error.log")); !strings.Contains(string(log), "(11: Resource temporarily unavailable)") {
		t.Errorf("nginx's error log lacks the EAGAIN line:\n%s", log)
	}

	// ls: the socket full, php-fpm its owner, as ss -xl says.
	out, stderr, code := runIn(t, "", "ls", "--netns", ns.Name, "--path", sock, "--json")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	var snap snapshot.Snapshot
	if err := json.Unmarshal([]byte(out), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Listeners) != 1 {
		t.Fatalf("ls --path %s: %+v", sock, snap.Listeners)
	}
	l := snap.Listeners[0]
	if l.Family != "unix" || l.Path != sock || l.AcceptQueue != fpmBacklog+1 || l.Backlog != fpmBacklog || !l.Full() {
		t.Errorf("listener %+v, want %s %d/%d", l, sock, fpmBacklog+1, fpmBacklog)
	}
	if len(l.Processes) == 0 || !strings.HasPrefix(l.Processes[0].Comm, "php-fpm") || l.Processes[0].PID != pool[0] {
		t.Errorf("owners %+v, want php-fpm (%d) first", l.Processes, pool[0])
	}
	ss := testutil.SSUnixListeners(t, ns.Path)
	found := false
	for _, s := range ss {
		if s.Name == sock {
			found = true
			if s.RecvQ != int(l.AcceptQueue) || s.SendQ != int(l.Backlog) || s.Inode != l.Inode {
				t.Errorf("ss -xl %+v, backlog %d/%d inode %d", s, l.AcceptQueue, l.Backlog, l.Inode)
			}
		}
	}
	if !found {
		t.Errorf("ss -xl does not show %s: %+v", sock, ss)
	}
	text, _, _ := runIn(t, "", "ls", "--netns", ns.Name, "--path", sock)
	if !strings.Contains(text, sock) || !strings.Contains(text, "5/4") || !strings.Contains(text, "php-fpm") {
		t.Errorf("ls table:\n%s", text)
	}
	t.Logf("ls:\n%s", text)

	// doctor: the full socket, php-fpm, and php-fpm's knob.
	out, stderr, code = runIn(t, "", "doctor", "--netns", ns.Name, "--duration", "2s", "--json")
	if code != exitTrouble {
		t.Fatalf("doctor exit %d, want 3: %s\n%s", code, stderr, out)
	}
	var res doctorOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f := res.Findings[0]
	if f.Rule != "unix-accept-queue-full" || f.Severity != "critical" || f.Listener != sock {
		t.Fatalf("first finding %+v", f)
	}
	if len(f.Processes) == 0 || !strings.HasPrefix(f.Processes[0].Comm, "php-fpm") || !strings.Contains(f.Advice, "listen.backlog") ||
		f.Evidence["accept_queue_peak"] != fpmBacklog+1 || f.Evidence["backlog"] != fpmBacklog {
		t.Errorf("finding %+v", f)
	}
	t.Logf("doctor: %s: %s", f.Summary, f.Advice)

	// serve and a real Prometheus: one series, the queue full.
	s := startServe(t, "--netns", ns.Name)
	_, body := get(t, http.DefaultClient, "http://"+s.addr+"/metrics")
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	if n := strings.Count(body, fmt.Sprintf("\nbacklog_listener_accept_queue{address=\"\",container=\"\",family=\"unix\",namespace=\"\",netns=%q,path=%q,", ns.Name, sock)); n != 1 {
		t.Errorf("%d accept-queue series for one listener:\n%s", n, body)
	}
	prom := startPrometheus(t, s.addr)
	sel := fmt.Sprintf(`{job="backlog",family="unix",netns=%q,path=%q,address="",port=""}`, ns.Name, sock)
	testutil.Eventually(t, 30*time.Second, func() error {
		q := query(t, prom, "backlog_listener_accept_queue"+sel)
		peak := query(t, prom, "backlog_listener_accept_queue_peak"+sel)
		b := query(t, prom, "backlog_listener_backlog"+sel)
		owner := query(t, prom, `count(backlog_listener_backlog{process=~"php-fpm.*",`+sel[1:]+`)`)
		if len(q) != 1 || q[0] != fpmBacklog+1 || len(peak) != 1 || peak[0] != fpmBacklog+1 || len(b) != 1 || b[0] != fpmBacklog || len(owner) != 1 || owner[0] != 1 {
			return fmt.Errorf("queue %v peak %v backlog %v php-fpm series %v; want %d, %d, %d, 1", q, peak, b, owner, fpmBacklog+1, fpmBacklog+1, fpmBacklog)
		}
		t.Logf("Prometheus: accept queue %v, peak %v, backlog %v", q[0], peak[0], b[0])
		return nil
	})
}

// startDaemon runs a server in the foreground of its own process group and
// ends it (and what it started) by that group at cleanup.
func startDaemon(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	return startDaemonEnv(t, nil, argv...)
}

// startDaemonEnv is startDaemon with env added to this process's
// environment.
func startDaemonEnv(t *testing.T, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log strings.Builder
	var mu sync.Mutex
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGCONT) // the group this test made
		syscall.Kill(-pgid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		syscall.Kill(-pgid, syscall.SIGKILL) // workers that outlived their master
		if t.Failed() {
			mu.Lock()
			t.Logf("%s said:\n%s", filepath.Base(argv[len(argv)-1]), log.String())
			mu.Unlock()
		}
	})
	return cmd
}

// descendants returns pid's process and its descendants, parents first:
// through `ip netns exec`, which execs, pid is the server itself.
func descendants(pid int) []int {
	out := []int{pid}
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// comm may hold spaces: the fields after its ")" are fixed.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], p)
			}
		}
	}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// nsHTTPClient makes HTTP requests from inside ns: each connection's
// socket is opened there.
func nsHTTPClient(ns *lab.Namespace) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

func httpGet(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
