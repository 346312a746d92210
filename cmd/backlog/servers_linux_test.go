package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// Real servers from Debian, tried as a new user would: each runs in a
// namespace this test makes, clients come over a veth pair from a second
// one, and what ls and doctor say is checked against ss and the kernel.

// serverPair makes a server and a client namespace joined by a veth pair.
func serverPair(t *testing.T, prefix string) (srv, cli *lab.Namespace, addr netip.Addr) {
	t.Helper()
	srv = labtest.Namespace(t, prefix+"-s")
	cli = labtest.Namespace(t, prefix+"-c")
	if err := lab.Veth(srv, cli, netip.MustParsePrefix("10.213.0.1/24"), netip.MustParsePrefix("10.213.0.2/24")); err != nil {
		t.Fatal(err)
	}
	return srv, cli, netip.MustParseAddr("10.213.0.1")
}

// lsPort returns ls --json's listeners of port in ns.
func lsPort(t *testing.T, ns *lab.Namespace, port int) []snapshot.Listener {
	t.Helper()
	out, stderr, code := runIn(t, "", "ls", "--netns", ns.Name, "--port", strconv.Itoa(port), "--json")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	var snap snapshot.Snapshot
	if err := json.Unmarshal([]byte(out), &snap); err != nil {
		t.Fatal(err)
	}
	return snap.Listeners
}

// doctorNs runs doctor on one namespace and returns its findings.
func doctorNs(t *testing.T, ns *lab.Namespace, d string) []doctor.Finding {
	t.Helper()
	out, stderr, code := runIn(t, "", "doctor", "--netns", ns.Name, "--duration", d, "--json")
	if code != 0 && code != exitTrouble {
		t.Fatalf("doctor exit %d: %s", code, stderr)
	}
	var res doctorOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range res.Findings {
		t.Logf("doctor: %s %s %s %s %v ctx %v | %s | %s", f.Severity, f.Rule, f.Listener, f.Summary, f.Evidence, f.Context, f.Advice, f.Command)
	}
	return res.Findings
}

func findingFor(fs []doctor.Finding, rule, listener string) *doctor.Finding {
	for i := range fs {
		if fs[i].Rule == rule && (listener == "" || fs[i].Listener == listener) {
			return &fs[i]
		}
	}
	return nil
}

// ssMatches checks ls's listeners of a port against ss -ltnm's, as
// multisets of (accept queue, backlog, drops): SO_REUSEPORT members share
// their address, so ss tells them apart only by these numbers.
func ssMatches(t *testing.T, ns *lab.Namespace, port int, ls []snapshot.Listener) {
	t.Helper()
	type row struct{ aq, bl, drops int }
	var got, want []row
	for _, l := range ls {
		d := -1
		if l.Drops != nil {
			d = int(*l.Drops)
		}
		got = append(got, row{int(l.AcceptQueue), int(l.Backlog), d})
	}
	for _, s := range testutil.SSListeners(t, ns.Name, fmt.Sprintf("sport = :%d", port)) {
		want = append(want, row{s.RecvQ, s.SendQ, s.Drops})
	}
	less := func(a, b row) int { return a.aq*1e6 + a.drops - b.aq*1e6 - b.drops }
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if !slices.Equal(got, want) {
		t.Errorf("ls %v, ss %v", got, want)
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func tempRunDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// stop sends SIGSTOP to pid (a process this test started) and SIGCONT at
// cleanup.
func stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	testutil.Eventually(t, 5*time.Second, func() error {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) == 0 || f[0] != "T" {
			return fmt.Errorf("pid %d not stopped yet", pid)
		}
		return nil
	})
}

func waitListening(t *testing.T, ns *lab.Namespace, port, n int) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() error {
		if got := len(testutil.SSListeners(t, ns.Name, fmt.Sprintf("sport = :%d", port))); got != n {
			return fmt.Errorf("%d listeners on port %d, want %d", got, port, n)
		}
		return nil
	})
}

// TestNginxReuseport: nginx with `listen ... reuseport backlog=8` and two
// workers has one socket per worker. ls tells the members apart with their
// own queues and drops, each served by its own worker (the one whose epoll
// watches it) beside the master; with one worker stopped its member fills
// to backlog+1 alone and doctor names that worker, stopped, with
// kill -CONT, and only that member.
func TestNginxReuseport(t *testing.T) {
	nginx := testutil.RequireTool(t, "nginx")
	srv, cli, addr := serverPair(t, "bl-ngx")
	dir := tempRunDir(t, "bl-ngx-")
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	port := 8080
	conf := nginxConf(t, dir, 2, addr, port, "reuseport backlog=8")
	master := startDaemon(t, "ip", "netns", "exec", srv.Name, nginx, "-c", conf, "-p", dir)
	waitListening(t, srv, port, 2)

	var ls []snapshot.Listener
	testutil.Eventually(t, 10*time.Second, func() error {
		ls = lsPort(t, srv, port)
		for _, l := range ls {
			if servingPIDs(l) == nil {
				return fmt.Errorf("no serving worker yet: %+v", l.Processes)
			}
		}
		return nil
	})
	if len(ls) != 2 || ls[0].Inode == ls[1].Inode {
		t.Fatalf("members %+v", ls)
	}
	workers := map[int]bool{}
	for _, l := range ls {
		sv := servingPIDs(l)
		if len(sv) != 1 {
			t.Fatalf("member %d served by %v, want one worker", l.Inode, sv)
		}
		workers[sv[0]] = true
		for _, p := range l.Processes {
			if p.PID == master.Process.Pid && p.Role != snapshot.RoleMaster || p.PID == sv[0] && p.Role != snapshot.RoleWorker {
				t.Errorf("member %d owner %+v: wrong role (master %d)", l.Inode, p, master.Process.Pid)
			}
		}
	}
	if len(workers) != 2 {
		t.Fatalf("both members served by the same worker: %+v", ls)
	}
	victim := ls[0]
	stopped := servingPIDs(victim)[0]
	stop(t, stopped)

	// 60 clients: the group's hash spreads them over both members.
	var clients []*lab.Clients
	testutil.Eventually(t, 10*time.Second, func() error {
		clients = append(clients, labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 20))
		for _, l := range lsPort(t, srv, port) {
			if l.Inode == victim.Inode && l.AcceptQueue == 9 {
				return nil
			}
		}
		return fmt.Errorf("the stopped worker's member is not full yet")
	})
	// 20 more: some hash to the full member (all 20 missing it has odds
	// of 2^-20) and are dropped there.
	clients = append(clients, labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 20))
	time.Sleep(1500 * time.Millisecond) // SYN retransmits: drops on the full member
	// doctor while the clients retransmit: the member's drops grow.
	fs := doctorNs(t, srv, "3s")
	f := findingFor(fs, "owner-stopped", "")
	if f == nil || f.Command != fmt.Sprintf("kill -CONT %d", stopped) || f.Evidence["accept_queue"] != 9 {
		t.Fatalf("owner-stopped: %+v", f)
	}
	ov := findingFor(fs, "accept-queue-overflow", "")
	if ov == nil || ov.Server != "nginx" || !strings.Contains(ov.Advice, "stopped") || ov.Evidence["listener_drops"] <= 0 {
		t.Errorf("overflow: %+v", ov)
	}
	if g := findingFor(fs, "reuseport-imbalance", ""); g == nil || g.Evidence["members"] != 2 || g.Evidence["members_full"] != 1 ||
		len(g.Processes) != 1 || g.Processes[0].PID != stopped {
		t.Errorf("reuseport-imbalance: %+v", g)
	}
	n := 0
	for _, f := range fs {
		if f.Rule == "owner-stopped" || f.Rule == "accept-queue-overflow" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d findings on the group, want the full member's two only", n)
	}
	// Closed clients send nothing more, so ls and ss read the same drops.
	for _, c := range clients {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	ls = lsPort(t, srv, port)
	ssMatches(t, srv, port, ls)
	var full, other snapshot.Listener
	for _, l := range ls {
		if l.Inode == victim.Inode {
			full = l
		} else {
			other = l
		}
	}
	if full.AcceptQueue != 9 || full.Backlog != 8 || other.AcceptQueue != 0 || full.Drops == nil || *full.Drops == 0 {
		t.Errorf("members: full %d/%d drops %v, other %d/%d", full.AcceptQueue, full.Backlog, full.Drops, other.AcceptQueue, other.Backlog)
	}
	if sv := servingPIDs(full); len(sv) != 1 || sv[0] != stopped || !ownerStopped(full, stopped) {
		t.Errorf("full member's owners %+v, want %d serving and stopped", full.Processes, stopped)
	}
	text, _, _ := runIn(t, "", "ls", "--netns", srv.Name, "--port", strconv.Itoa(port))
	if !strings.Contains(text, fmt.Sprintf("nginx(%d stopped)", stopped)) || !strings.Contains(text, "master)") ||
		!strings.Contains(text, fmt.Sprintf("SO_REUSEPORT group %s:%d: 2 members, accept queues ", addr, port)) {
		t.Errorf("ls table does not mark the stopped worker and the master:\n%s", text)
	}
	t.Logf("ls:\n%s", text)

	// Each member is its own listener on both collection paths, in ls,
	// top and serve: its numbers are ss's for that socket.
	ss := map[uint32]testutil.SSListener{}
	for _, s := range testutil.SSListeners(t, srv.Name, fmt.Sprintf("sport = :%d", port)) {
		ss[s.Inode] = s
	}
	if len(ss) != 2 {
		t.Fatalf("ss shows %d members: %+v", len(ss), ss)
	}
	for _, path := range []string{"bpf_iter", "sock_diag"} {
		var flags []string
		if path == "sock_diag" {
			flags = []string{"--no-bpf"}
		}
		out, stderr, code := runIn(t, "", append([]string{"ls", "--netns", srv.Name, "--port", strconv.Itoa(port), "--json"}, flags...)...)
		var snap snapshot.Snapshot
		if code != 0 || json.Unmarshal([]byte(out), &snap) != nil || snap.Source != path {
			t.Fatalf("ls %v: exit %d source %q: %s", flags, code, snap.Source, stderr)
		}
		top, stderr, code := runIn(t, "", append([]string{"top", "--json", "--count", "2", "--interval", "300ms", "--netns", srv.Name, "--port", strconv.Itoa(port)}, flags...)...)
		lines := strings.Split(strings.TrimSpace(top), "\n")
		var d snapshot.Delta
		if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &d) != nil {
			t.Fatalf("top %v: exit %d: %s", flags, code, stderr)
		}
		sv := startServe(t, append([]string{"--netns", srv.Name, "--port", strconv.Itoa(port)}, flags...)...)
		_, body := get(t, http.DefaultClient, "http://"+sv.addr+"/metrics")
		if !strings.Contains(body, fmt.Sprintf("backlog_collection_source{source=%q} 1", path)) {
			t.Errorf("serve %v did not read with %s", flags, path)
		}
		if promtool, err := exec.LookPath("promtool"); err == nil {
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		}
		series := memberSeries(body)
		if len(series) != 2 || len(snap.Listeners) != 2 || len(d.Listeners) != 2 {
			t.Fatalf("%s: %d series, %d ls rows, %d top rows; want each member apart:\n%s", path, len(series), len(snap.Listeners), len(d.Listeners), body)
		}
		for ino, s := range ss {
			m := series[ino]
			if m["accept_queue"] != float64(s.RecvQ) || m["backlog"] != float64(s.SendQ) || m["drops_total"] != float64(s.Drops) ||
				m["accept_queue_peak"] < float64(s.RecvQ) {
				t.Errorf("%s: serve's member %d %v, ss %d/%d drops %d", path, ino, m, s.RecvQ, s.SendQ, s.Drops)
			}
			for _, l := range snap.Listeners {
				if l.Inode == ino && (int(l.AcceptQueue) != s.RecvQ || int(l.Backlog) != s.SendQ || l.Drops == nil || int(*l.Drops) != s.Drops) {
					t.Errorf("%s: ls member %d %d/%d drops %v, ss %d/%d drops %d", path, ino, l.AcceptQueue, l.Backlog, l.Drops, s.RecvQ, s.SendQ, s.Drops)
				}
			}
			for _, l := range d.Listeners {
				if l.Inode == ino && (int(l.AcceptQueue) != s.RecvQ || int(l.Backlog) != s.SendQ || int(l.AcceptQueuePeak) < s.RecvQ || int(l.AcceptQueuePeak) > s.SendQ+1) {
					t.Errorf("%s: top member %d %d/%d peak %d, ss %d/%d", path, ino, l.AcceptQueue, l.Backlog, l.AcceptQueuePeak, s.RecvQ, s.SendQ)
				}
			}
		}
		t.Logf("%s: serve %v, ss %+v", path, series, ss)
	}

	// Half-open handshakes (the client drops its own final ACKs): a SYN
	// hashed to the full member is dropped, one hashed to the idle member
	// waits in that member's SYN queue. BPF iterators read each member's
	// own; sock_diag names no listener on a request, so each member's is
	// unknown there (absent, "?") and the group's total is said as such.
	if err := cli.DropBareACKs(); err != nil {
		t.Fatal(err)
	}
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 16)
	synRecv := func() int { return testutil.SSCount(t, srv.Name, "syn-recv", fmt.Sprintf("sport = :%d", port)) }
	testutil.Eventually(t, 10*time.Second, func() error {
		if synRecv() == 0 {
			return fmt.Errorf("no half-open handshake yet")
		}
		return nil
	})
	for _, path := range []string{"bpf_iter", "sock_diag"} {
		var flags []string
		if path == "sock_diag" {
			flags = []string{"--no-bpf"}
		}
		sv := startServe(t, append([]string{"--netns", srv.Name, "--port", strconv.Itoa(port)}, flags...)...)
		// The kernel prunes half-open requests of a queue over half full
		// (reqsk_timer_handler()), so ss is read before and after, and
		// the reads count when both agree.
		var half int
		var text string
		testutil.Eventually(t, 15*time.Second, func() error {
			half = synRecv()
			out, _, _ := runIn(t, "", append([]string{"ls", "--netns", srv.Name, "--port", strconv.Itoa(port), "--json"}, flags...)...)
			_, body := get(t, http.DefaultClient, "http://"+sv.addr+"/metrics")
			text, _, _ = runIn(t, "", append([]string{"ls", "--netns", srv.Name, "--port", strconv.Itoa(port)}, flags...)...)
			if again := synRecv(); again != half || half == 0 {
				return fmt.Errorf("SYN-RECV moved from %d to %d meanwhile", half, again)
			}
			var snap snapshot.Snapshot
			if err := json.Unmarshal([]byte(out), &snap); err != nil || len(snap.Listeners) != 2 {
				return fmt.Errorf("ls %v: %v %s", flags, err, out)
			}
			series := memberSeries(body)
			for _, l := range snap.Listeners {
				m := series[l.Inode]
				syn, known := m["syn_queue"]
				switch {
				case path == "bpf_iter" && l.Inode == victim.Inode:
					if l.SynQueue == nil || *l.SynQueue != 0 || !known || syn != 0 {
						return fmt.Errorf("bpf_iter: the full member holds half-open requests: ls %v, serve %v", l.SynQueue, m)
					}
				case path == "bpf_iter":
					if l.SynQueue == nil || int(*l.SynQueue) != half || !known || int(syn) != half {
						return fmt.Errorf("bpf_iter: the idle member's SYN queue: ls %v, serve %v; ss counts %d SYN-RECV", l.SynQueue, m, half)
					}
				default:
					if l.SynQueue != nil || l.GroupSynQueue == nil || int(*l.GroupSynQueue) != half || known {
						return fmt.Errorf("sock_diag: member %d syn_queue %v group_syn_queue %v, serve %v; want unknown, the group's %d", l.Inode, l.SynQueue, l.GroupSynQueue, m, half)
					}
				}
			}
			if path == "sock_diag" && !strings.Contains(text, fmt.Sprintf("SYN queue %d for the group", half)) {
				return fmt.Errorf("ls does not say the group's SYN queue:\n%s", text)
			}
			return nil
		})
		t.Logf("%s, %d SYN-RECV (ss):\n%s", path, half, text)
		// doctor on this path: the stopped member is still named, and no
		// member is blamed for SYN-queue state that is not its own.
		out, stderr, code := runIn(t, "", append([]string{"doctor", "--netns", srv.Name, "--duration", "1s", "--json"}, flags...)...)
		var res doctorOutput
		if code != exitTrouble || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("doctor %v: exit %d: %s", flags, code, stderr)
		}
		if f := findingFor(res.Findings, "owner-stopped", ""); f == nil || f.Command != fmt.Sprintf("kill -CONT %d", stopped) || f.Inode != victim.Inode {
			t.Errorf("%s: owner-stopped %+v", path, f)
		}
		for _, f := range res.Findings {
			t.Logf("%s doctor: %s %s %s %v ctx %v", path, f.Severity, f.Rule, f.Summary, f.Evidence, f.Context)
			if f.Rule != "syn-queue-full" {
				continue
			}
			if path == "sock_diag" && f.Evidence["members"] != 2 || path == "bpf_iter" && f.Inode == victim.Inode {
				t.Errorf("%s: %s blames one member for the group's half-open requests: %+v", path, f.Rule, f)
			}
		}
	}
}

// memberSeries reads the listener series of a scrape by socket_inode:
// metric name without backlog_listener_ -> value.
func memberSeries(body string) map[uint32]map[string]float64 {
	re := regexp.MustCompile(`(?m)^backlog_listener_(\w+)\{[^}]*socket_inode="(\d+)"[^}]*\} (\S+)$`)
	out := map[uint32]map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ino, _ := strconv.ParseUint(m[2], 10, 32)
		v, _ := strconv.ParseFloat(m[3], 64)
		if out[uint32(ino)] == nil {
			out[uint32(ino)] = map[string]float64{}
		}
		out[uint32(ino)][m[1]] = v
	}
	return out
}

func servingPIDs(l snapshot.Listener) []int {
	var out []int
	for _, p := range l.Processes {
		if p.Serving {
			out = append(out, p.PID)
		}
	}
	return out
}

func ownerStopped(l snapshot.Listener, pid int) bool {
	for _, p := range l.Processes {
		if p.PID == pid {
			return p.State == "T"
		}
	}
	return false
}

// inNs runs a command in ns and fails the test on error.
func inNs(t *testing.T, ns *lab.Namespace, args ...string) {
	t.Helper()
	testutil.InNetns(t, ns.Name, args...)
}

// TestRedisServer: redis asks listen() for 511 (tcp-backlog). Started while
// the namespace's somaxconn is 128 it gets 128; somaxconn raised later,
// doctor says restart it to pick up the new somaxconn, and how it knows.
// Stopped, its queue fills to 129/128 and doctor names the stopped
// process, not "add accepting threads", with redis's own knob.
func TestRedisServer(t *testing.T) {
	redis := testutil.RequireTool(t, "redis-server")
	srv, cli, addr := serverPair(t, "bl-redis")
	dir := tempRunDir(t, "bl-redis-")
	inNs(t, srv, "sysctl", "-qw", "net.core.somaxconn=128")
	port := 6379
	cmd := startDaemon(t, "ip", "netns", "exec", srv.Name, redis, "--port", strconv.Itoa(port), "--bind", addr.String(),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--protected-mode", "no")
	waitListening(t, srv, port, 1)
	// Capped now: the command reaches what redis asked for, not 2x 128.
	if f := findingFor(doctorNs(t, srv, "1s"), "backlog-capped-by-somaxconn", ""); f == nil || f.Server != "redis" || f.RequestedBacklog != 511 ||
		!strings.HasSuffix(f.Command, "sysctl -w net.core.somaxconn=511") || !strings.Contains(f.Advice, "restart redis") {
		t.Errorf("capped by somaxconn: %+v", f)
	}
	inNs(t, srv, "sysctl", "-qw", "net.core.somaxconn=4096")

	ls := lsPort(t, srv, port)
	if len(ls) != 1 || ls[0].Backlog != 128 || len(ls[0].Processes) != 1 || ls[0].Processes[0].Comm != "redis-server" {
		t.Fatalf("redis listener %+v", ls)
	}
	fs := doctorNs(t, srv, "1s")
	f := findingFor(fs, "backlog-capped-at-listen", "")
	if f == nil || f.Server != "redis" || f.RequestedBacklog != 511 || f.RequestedFrom != "redis's default, capped" ||
		!strings.Contains(f.Summary, "restart it to pick up the new somaxconn") || !strings.Contains(f.Why, "tcp-backlog") && !strings.Contains(f.Summary, "asked for a backlog of 511 and got 128") {
		t.Errorf("restart advice: %+v", f)
	}

	pid := ls[0].Processes[0].PID
	if pid != cmd.Process.Pid && !slices.Contains(descendants(cmd.Process.Pid), pid) {
		t.Fatalf("owner %d is not the redis this test started (%d)", pid, cmd.Process.Pid)
	}
	stop(t, pid)
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 200)
	testutil.Eventually(t, 10*time.Second, func() error {
		if l := lsPort(t, srv, port); len(l) != 1 || l[0].AcceptQueue != 129 {
			return fmt.Errorf("redis queue %+v, want 129/128", l)
		}
		return nil
	})
	fs = doctorNs(t, srv, "2s")
	st := findingFor(fs, "owner-stopped", "")
	if st == nil || st.Command != fmt.Sprintf("kill -CONT %d", pid) || st.Severity != doctor.Critical {
		t.Errorf("owner-stopped: %+v", st)
	}
	ov := findingFor(fs, "accept-queue-overflow", "")
	if ov == nil || ov.Server != "redis" || strings.Contains(ov.Advice, "threads") || strings.Contains(ov.Advice, "nginx") || ov.Evidence["listener_drops"] <= 0 {
		t.Errorf("overflow: %+v", ov)
	}
	// Clients still retransmit, so only the queues are compared with ss.
	if l, s := lsPort(t, srv, port), testutil.SSListeners(t, srv.Name, fmt.Sprintf("sport = :%d", port)); len(l) != 1 || len(s) != 1 ||
		int(l[0].AcceptQueue) != s[0].RecvQ || int(l[0].Backlog) != s[0].SendQ {
		t.Errorf("ls %+v, ss %+v", l, s)
	}
	text, _, _ := runIn(t, "", "ls", "--netns", srv.Name, "--port", strconv.Itoa(port))
	if !strings.Contains(text, "129/128") || !strings.Contains(text, fmt.Sprintf("redis-server(%d stopped)", pid)) {
		t.Errorf("ls:\n%s", text)
	}
}

// TestMemcachedAtMaxconns: memcached with -c 12 (it needs a few of those
// descriptors itself) and -o no_maxconns_fast
// calls listen(fd, 0) when its connections are used up. ls shows backlog 0
// with the connections it holds as full, and doctor says connection
// limit with memcached's -c, and the backlog it asked for (-b 32) from its
// command line. Clients that were queued before it lowered the backlog stay
// in the queue, so the queue can hold more than one.
func TestMemcachedAtMaxconns(t *testing.T) {
	mc := testutil.RequireTool(t, "memcached")
	srv, cli, addr := serverPair(t, "bl-mc")
	port := 11211
	startDaemon(t, "ip", "netns", "exec", srv.Name, mc, "-u", "root", "-l", addr.String(), "-p", strconv.Itoa(port),
		"-c", "12", "-b", "32", "-t", "1", "-o", "no_maxconns_fast")
	waitListening(t, srv, port, 1)
	if ls := lsPort(t, srv, port); len(ls) != 1 || ls[0].Backlog != 32 {
		t.Fatalf("memcached listener %+v, want backlog 32", ls)
	}
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 20)
	var l snapshot.Listener
	testutil.Eventually(t, 10*time.Second, func() error {
		ls := lsPort(t, srv, port)
		// Clients queued before memcached lowered its backlog stay
		// queued: at least the one backlog 0 holds.
		if len(ls) != 1 || ls[0].Backlog != 0 || ls[0].AcceptQueue < 1 {
			return fmt.Errorf("memcached listener %+v, want N/0 with N >= 1", ls)
		}
		l = ls[0]
		return nil
	})
	ssMatches(t, srv, port, []snapshot.Listener{l})
	text, _, _ := runIn(t, "", "ls", "--netns", srv.Name, "--port", strconv.Itoa(port))
	if !strings.Contains(text, fmt.Sprintf("%d/0", l.AcceptQueue)) || !strings.Contains(text, "full") || !strings.Contains(text, "BACKLOG 0") {
		t.Errorf("ls:\n%s", text)
	}
	// serve exports backlog 0 as it is, not skipped: a real state.
	sv := startServe(t, "--netns", srv.Name, "--port", strconv.Itoa(port))
	_, body := get(t, http.DefaultClient, "http://"+sv.addr+"/metrics")
	if m := memberSeries(body)[l.Inode]; m == nil || m["backlog"] != 0 || m["accept_queue_peak"] < 1 {
		t.Errorf("serve: %v, want backlog 0 and its queue", m)
	}
	fs := doctorNs(t, srv, "1s")
	f := findingFor(fs, "connection-limit", "")
	if f == nil || f.Server != "memcached" || !strings.Contains(f.Advice, "Raise `-c`") || f.RequestedBacklog != 32 || !strings.Contains(f.RequestedFrom, "command line") {
		t.Errorf("connection-limit: %+v", f)
	}
	for _, f := range fs {
		if strings.Contains(f.Advice, "threads") {
			t.Errorf("%s advises threads: %s", f.Rule, f.Advice)
		}
	}
}

// TestHAProxyAtMaxconn: haproxy's frontend with maxconn 4 stops accepting
// while 4 connections are open (its backend, a socket that never accepts,
// holds them); its backlog defaults to that maxconn, and the next 5 clients
// fill the queue. doctor's advice is maxconn, not accepting threads.
func TestHAProxyAtMaxconn(t *testing.T) {
	hap := testutil.RequireTool(t, "haproxy")
	srv, cli, addr := serverPair(t, "bl-hap")
	dir := tempRunDir(t, "bl-hap-")
	backend := labtest.Listen(t, srv, "127.0.0.1:0", 64)
	port := 8081
	conf := writeFile(t, dir, "haproxy.cfg", fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind %s:%d
  maxconn 4
  default_backend b
backend b
  server s1 127.0.0.1:%d
`, addr, port, backend.Port))
	startDaemon(t, "ip", "netns", "exec", srv.Name, hap, "-db", "-f", conf)
	waitListening(t, srv, port, 1)
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 30)
	testutil.Eventually(t, 10*time.Second, func() error {
		if l := lsPort(t, srv, port); len(l) != 1 || l[0].AcceptQueue != 5 || l[0].Backlog != 4 {
			return fmt.Errorf("haproxy listener %+v, want 5/4", l)
		}
		return nil
	})
	fs := doctorNs(t, srv, "2s")
	f := findingFor(fs, "accept-queue-overflow", "")
	if f == nil || f.Server != "haproxy" || !strings.Contains(f.Advice, "maxconn") || strings.Contains(f.Advice, "threads") {
		t.Errorf("haproxy: %+v", f)
	}
}

// TestPythonDualStack: python3 -m http.server --bind :: is one dual-stack
// listener (IPV6_V6ONLY off) with socketserver's backlog of 5. Before it is
// stopped, an hping3 SYN scan moves its drops by 50 and ListenDrops by 0:
// doctor calls it healthy. Stopped, IPv4 clients fill it and doctor names
// the stopped process and Python's own setting.
func TestPythonDualStack(t *testing.T) {
	py := testutil.RequireTool(t, "/usr/bin/python3")
	hping := testutil.RequireTool(t, "hping3")
	srv, cli, addr := serverPair(t, "bl-py")
	port := 8000
	cmd := startDaemon(t, "ip", "netns", "exec", srv.Name, py, "-m", "http.server", "--bind", "::", strconv.Itoa(port))
	waitListening(t, srv, port, 1)
	ls := lsPort(t, srv, port)
	if len(ls) != 1 || ls[0].Address.String() != "::" || ls[0].V6Only == nil || *ls[0].V6Only || ls[0].Backlog != 5 {
		t.Fatalf("python listener %+v", ls)
	}
	d0 := *ls[0].Drops
	n0 := testutil.Nstat(t, srv.Name)

	// A SYN scan during doctor's window: the client's kernel answers each
	// SYN-ACK with a RST, which the listener counts in sk_drops.
	scan := exec.Command("ip", "netns", "exec", cli.Name, "sh", "-c",
		fmt.Sprintf("sleep 0.3; exec %s -q -S -p %d -c 50 -i u10000 %s", hping, port, addr))
	if err := scan.Start(); err != nil {
		t.Fatal(err)
	}
	fs := doctorNs(t, srv, "2s")
	scan.Wait()
	ls = lsPort(t, srv, port)
	n1 := testutil.Nstat(t, srv.Name)
	if got := *ls[0].Drops - d0; got != 50 || n1["TcpExtListenDrops"] != n0["TcpExtListenDrops"] {
		t.Errorf("SYN scan: drops +%d, ListenDrops +%d; want +50, +0", got, n1["TcpExtListenDrops"]-n0["TcpExtListenDrops"])
	}
	if len(fs) != 1 || fs[0].Rule != "healthy" {
		t.Errorf("a SYN scan diagnosed as trouble: %+v", fs)
	}
	ssMatches(t, srv, port, ls)

	stop(t, cmd.Process.Pid)
	pid := ls[0].Processes[0].PID
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 20)
	testutil.Eventually(t, 10*time.Second, func() error {
		if l := lsPort(t, srv, port); len(l) != 1 || l[0].AcceptQueue != 6 {
			return fmt.Errorf("python queue %+v, want 6/5", l)
		}
		return nil
	})
	fs = doctorNs(t, srv, "2s")
	if st := findingFor(fs, "owner-stopped", ""); st == nil || st.Command != fmt.Sprintf("kill -CONT %d", pid) {
		t.Errorf("owner-stopped: %+v", st)
	}
	ov := findingFor(fs, "accept-queue-overflow", "[::]:"+strconv.Itoa(port))
	if ov == nil || ov.Server != "Python http.server" || ov.RequestedBacklog != 5 {
		t.Errorf("overflow: %+v", ov)
	}
}

// TestNginxDeferred: nginx with `listen ... deferred backlog=4` sets
// TCP_DEFER_ACCEPT: clients that connect and send nothing stay half-open
// (their bare final ACKs ignored, TCPDeferAcceptDrop), the SYN queue of
// backlog+1 fills, and the next SYNs get cookies. doctor says
// TCP_DEFER_ACCEPT holds them, not "a flood", with nginx's `deferred`.
func TestNginxDeferred(t *testing.T) {
	nginx := testutil.RequireTool(t, "nginx")
	srv, cli, addr := serverPair(t, "bl-ngxd")
	dir := tempRunDir(t, "bl-ngxd-")
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	port := 8080
	conf := nginxConf(t, dir, 1, addr, port, "deferred backlog=4")
	startDaemon(t, "ip", "netns", "exec", srv.Name, nginx, "-c", conf, "-p", dir)
	waitListening(t, srv, port, 1)

	type result struct{ fs []doctor.Finding }
	done := make(chan result, 1)
	go func() {
		out, _, _ := runIn(t, "", "doctor", "--netns", srv.Name, "--duration", "3s", "--json")
		var res doctorOutput
		json.Unmarshal([]byte(out), &res)
		done <- result{res.Findings}
	}()
	time.Sleep(500 * time.Millisecond)
	// Connected clients that send nothing: each waits half-open.
	labtest.Dial(t, cli, netip.AddrPortFrom(addr, uint16(port)), 30)
	fs := (<-done).fs
	for _, f := range fs {
		t.Logf("doctor: %s %s %s %v ctx %v | %s", f.Severity, f.Rule, f.Summary, f.Evidence, f.Context, f.Advice)
	}
	var held *doctor.Finding
	for i := range fs {
		if fs[i].Evidence["TCPDeferAcceptDrop"] > 0 && strings.Contains(fs[i].Summary, "TCP_DEFER_ACCEPT") {
			held = &fs[i]
		}
		if strings.Contains(fs[i].Summary, "(a flood") {
			t.Errorf("%s calls it a flood: %s", fs[i].Rule, fs[i].Summary)
		}
	}
	if held == nil || !strings.Contains(held.Advice, "deferred") {
		t.Errorf("no finding says TCP_DEFER_ACCEPT holds the handshakes, with nginx's deferred")
	}
}

// nginxConf writes an nginx.conf in dir for a server of workers processes
// in the foreground, everything it writes kept in dir, with one
// `listen addr:port opts` answering 200.
func nginxConf(t *testing.T, dir string, workers int, addr netip.Addr, port int, opts string) string {
	t.Helper()
	return writeFile(t, dir, "nginx.conf", fmt.Sprintf(`daemon off;
master_process on;
worker_processes %[4]d;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log error;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server {
    listen %[2]s:%[3]d %[5]s;
    location / { return 200 "ok"; }
  }
}
`, dir, addr, port, workers, opts))
}
