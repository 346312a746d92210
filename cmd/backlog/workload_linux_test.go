package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
	"github.com/backlog-dev/backlog/internal/workload/runtimetest"
)

// lsListener runs `backlog ls --json` with args until the listener on
// port has a full accept queue (backlog+1: the payload fills its own)
// and returns it with its snapshot.
func lsListener(t *testing.T, port, backlog int, args ...string) (snapshot.Listener, *snapshot.Snapshot) {
	t.Helper()
	var l snapshot.Listener
	var snap snapshot.Snapshot
	testutil.Eventually(t, 30*time.Second, func() error {
		out, stderr, code := runIn(t, "", append([]string{"ls", "--json", "--port", strconv.Itoa(port)}, args...)...)
		if code != 0 {
			return fmt.Errorf("ls exit %d: %s", code, stderr)
		}
		snap = snapshot.Snapshot{}
		if err := json.Unmarshal([]byte(out), &snap); err != nil {
			return err
		}
		if len(snap.Listeners) != 1 {
			return fmt.Errorf("%d listeners on port %d, want 1:\n%s", len(snap.Listeners), port, out)
		}
		l = snap.Listeners[0]
		if l.AcceptQueue != uint32(backlog+1) || l.Backlog != uint32(backlog) {
			return fmt.Errorf("accept queue %d/%d, want %d/%d", l.AcceptQueue, l.Backlog, backlog+1, backlog)
		}
		return nil
	})
	return l, &snap
}

func wantWorkload(t *testing.T, l snapshot.Listener, want snapshot.Workload) {
	t.Helper()
	if l.Workload == nil {
		t.Fatalf("listener %v:%d has no workload, want %+v", l.Address, l.Port, want)
	}
	got := *l.Workload
	want.Node = got.Node
	if got != want || got.Node == "" {
		t.Errorf("workload %+v, want %+v with a node", got, want)
	}
}

// TestWorkloadDocker: a real dockerd, a named container listening with
// backlog 3, filled; ls names it by docker's own state.
func TestWorkloadDocker(t *testing.T) {
	d := runtimetest.StartDocker(t)
	name := fmt.Sprintf("bl-docker-%d", os.Getpid())
	id, pid := d.Run(t, name, 8080, 3)
	root := "docker=" + d.DataRoot
	l, snap := lsListener(t, 8080, 3, "--runtime-root", root, "--container", name)
	wantWorkload(t, l, snapshot.Workload{Runtime: "docker", Container: name, ContainerID: id})
	if len(l.Processes) != 1 || l.Processes[0].PID != pid {
		t.Errorf("owners %+v, want the payload %d", l.Processes, pid)
	}
	if ns := snap.Namespace(l.Netns); ns == nil || ns.Workload == nil || ns.Workload.Container != name {
		t.Errorf("namespace %+v does not name the container", ns)
	}
	// --netns container:NAME and a bare container name find its namespace.
	for _, spec := range []string{"container:" + name, name} {
		l2, _ := lsListener(t, 8080, 3, "--runtime-root", root, "--netns", spec)
		if l2.Inode != l.Inode {
			t.Errorf("--netns %s: listener %d, want %d", spec, l2.Inode, l.Inode)
		}
	}
	table, _, _ := runIn(t, "", "ls", "--runtime-root", root, "--container", name)
	if !strings.Contains(table, "docker:"+name) {
		t.Errorf("table does not name docker:%s:\n%s", name, table)
	}
}

// TestWorkloadPodman: podman with runc on private storage, a named
// container listening with backlog 2, filled.
func TestWorkloadPodman(t *testing.T) {
	p := runtimetest.StartPodman(t)
	name := fmt.Sprintf("bl-podman-%d", os.Getpid())
	id, pid := p.Run(t, name, 8080, 2)
	l, _ := lsListener(t, 8080, 2, "--runtime-root", "containers="+p.Root, "--container", name)
	wantWorkload(t, l, snapshot.Workload{Runtime: "podman", Container: name, ContainerID: id})
	if len(l.Processes) != 1 || l.Processes[0].PID != pid {
		t.Errorf("owners %+v, want the payload %d", l.Processes, pid)
	}
}

// TestWorkloadPods drives containerd's CRI plugin as kubelet does: one
// pod with its own network namespace, one hostNetwork pod whose listener
// lives in the host namespace and still belongs to it; and a plain
// containerd container (ctr run) beside them, named by its id.
func TestWorkloadPods(t *testing.T) {
	c := runtimetest.StartContainerd(t)
	ns := fmt.Sprintf("bl-ns-%d", os.Getpid())
	uid1 := fmt.Sprintf("0bac1000-0000-4000-8000-%012d", os.Getpid())
	uid2 := fmt.Sprintf("0bac2000-0000-4000-8000-%012d", os.Getpid())
	web := c.RunPod(t, ns, "web", uid1, "server", false, 8080, 3)
	hostPort := freePort(t)
	edge := c.RunPod(t, ns, "edge", uid2, "proxy", true, hostPort, 2)
	root := "containerd=" + c.State

	l, snap := lsListener(t, 8080, 3, "--runtime-root", root, "--pod", ns+"/web")
	wantWorkload(t, l, snapshot.Workload{Runtime: "containerd", Namespace: ns, Pod: "web", PodUID: uid1, Container: "server", ContainerID: web.ContainerID})
	// The pod's namespace is the pod's, not one of its containers'.
	if n := snap.Namespace(l.Netns); n == nil || n.Workload == nil || n.Workload.Pod != "web" || n.Workload.Container != "" {
		t.Errorf("pod namespace %+v, want pod web without a container", n)
	}

	h, hsnap := lsListener(t, hostPort, 2, "--runtime-root", root, "--pod", ns+"/edge")
	wantWorkload(t, h, snapshot.Workload{Runtime: "containerd", Namespace: ns, Pod: "edge", PodUID: uid2, Container: "proxy", ContainerID: edge.ContainerID})
	if n := hsnap.Namespace(h.Netns); n == nil || n.Name != "host" {
		t.Errorf("hostNetwork listener in namespace %+v, want host", n)
	}
	// A plain containerd container (ctr run) is named by its id.
	plain := fmt.Sprintf("bl-ctr-%d", os.Getpid())
	plainPort := freePort(t)
	c.RunPlain(t, plain, plainPort, 2)
	pl, _ := lsListener(t, plainPort, 2, "--runtime-root", root, "--container", plain)
	wantWorkload(t, pl, snapshot.Workload{Runtime: "containerd", Container: plain, ContainerID: plain})

	// --netns pod:NS/NAME of a hostNetwork pod reads the host namespace
	// and keeps only the pod's listeners.
	out, _, code := runIn(t, "", "ls", "--json", "--runtime-root", root, "--netns", "pod:"+ns+"/edge")
	// Its UNIX listener, in the host's namespace too, is the pod's as well.
	var only snapshot.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &only) != nil || len(only.Listeners) != 2 {
		t.Fatalf("--netns pod:%s/edge: exit %d, listeners %+v, want its TCP and UNIX ones", ns, code, only.Listeners)
	}
	for _, l := range only.Listeners {
		if l.Inode != h.Inode && l.Path != fmt.Sprintf("@backlog-payload-%d", hostPort) {
			t.Errorf("--netns pod:%s/edge shows %+v", ns, l)
		}
		wantWorkload(t, l, *h.Workload)
	}
}

// TestWorkloadViews: one podman container seen through every view. Its
// payload fills a TCP and a UNIX accept queue; ls, top, doctor and serve
// name the container on both, and the real Prometheus, scraping with the
// documented honor_labels under target labels of the exporter's own pod,
// keeps the container's labels on its series and the exporter's off the
// host's.
func TestWorkloadViews(t *testing.T) {
	p := runtimetest.StartPodman(t)
	name := fmt.Sprintf("bl-views-%d", os.Getpid())
	id, _ := p.Run(t, name, 8080, 3)
	root := []string{"--runtime-root", "containers=" + p.Root}
	want := snapshot.Workload{Runtime: "podman", Container: name, ContainerID: id}
	lsListener(t, 8080, 3, append(root, "--container", name)...)

	// ls: the UNIX listener is the container's too.
	out, _, code := runIn(t, "", append([]string{"ls", "--json", "--container", name}, root...)...)
	var snap snapshot.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &snap) != nil {
		t.Fatalf("ls exit %d: %s", code, out)
	}
	var unix *snapshot.Listener
	for i := range snap.Listeners {
		if snap.Listeners[i].Path == "@backlog-payload-8080" {
			unix = &snap.Listeners[i]
		}
	}
	if unix == nil || len(snap.Listeners) != 2 {
		t.Fatalf("want the TCP and the UNIX listener of %s: %+v", name, snap.Listeners)
	}
	wantWorkload(t, *unix, want)
	if unix.AcceptQueue != 4 || unix.Backlog != 3 {
		t.Errorf("UNIX accept queue %d/%d, want 4/3", unix.AcceptQueue, unix.Backlog)
	}

	// top --json: every line names it.
	out, _, code = runIn(t, "", append([]string{"top", "--json", "--count", "2", "--interval", "200ms", "--container", name}, root...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("top exit %d, %d lines: %s", code, len(lines), out)
	}
	var frame snapshot.Snapshot
	if err := json.Unmarshal([]byte(lines[1]), &frame); err != nil || len(frame.Listeners) != 2 {
		t.Fatalf("top frame %v: %s", err, lines[1])
	}
	for _, l := range frame.Listeners {
		wantWorkload(t, l, want)
	}

	// doctor: the full queues are found and said to be the container's.
	out, _, code = runIn(t, "", append([]string{"doctor", "--json", "--duration", "2s", "--container", name}, root...)...)
	var report struct {
		Findings []struct {
			Rule     string
			Listener string
			Workload *snapshot.Workload
		}
	}
	if code != 3 || json.Unmarshal([]byte(out), &report) != nil || len(report.Findings) == 0 {
		t.Fatalf("doctor exit %d (want 3): %s", code, out)
	}
	// Namespace-wide findings (other tests' SYN floods) are not filtered
	// by listener; every listener finding is the container's.
	mine := 0
	for _, f := range report.Findings {
		if f.Listener == "" {
			continue
		}
		mine++
		if f.Workload == nil || f.Workload.Container != name {
			t.Errorf("finding %s on %s: workload %+v, want container %s", f.Rule, f.Listener, f.Workload, name)
		}
	}
	if mine == 0 {
		t.Errorf("no finding on the container's full queues: %s", out)
	}
	text, _, _ := runIn(t, "", append([]string{"doctor", "--duration", "1s", "--container", name}, root...)...)
	if !strings.Contains(text, "podman container "+name) {
		t.Errorf("doctor does not say where:\n%s", text)
	}

	// serve, scraped by Prometheus as docs/metrics.md says.
	s := startServe(t, root...)
	prom := startPrometheusWith(t, fmt.Sprintf(`  - job_name: backlog
    honor_labels: true
    static_configs:
      - targets: [%q]
        labels: {namespace: monitoring, pod: backlog-x1, container: backlog}
`, s.addr))
	testutil.Eventually(t, 30*time.Second, func() error {
		ctr := queryLabels(t, prom, fmt.Sprintf(`backlog_listener_accept_queue{container=%q}`, name))
		info := queryLabels(t, prom, fmt.Sprintf(`backlog_workload_info{container=%q}`, name))
		own := queryLabels(t, prom, `backlog_scrape_errors_total{source="owners"}`)
		if len(ctr) != 2 || len(info) != 1 || len(own) != 1 {
			return fmt.Errorf("container series %v, info %v, own %v", ctr, info, own)
		}
		for _, m := range ctr {
			if m["namespace"] != "" || m["pod"] != "" {
				return fmt.Errorf("container listener took the exporter's labels: %v", m)
			}
		}
		if info[0]["runtime"] != "podman" || info[0]["container_id"] != id || info[0]["node"] == "" {
			return fmt.Errorf("workload info %v", info[0])
		}
		if own[0]["namespace"] != "monitoring" || own[0]["pod"] != "backlog-x1" {
			return fmt.Errorf("the exporter's own series lost its target labels: %v", own[0])
		}
		if host := queryLabels(t, prom, `backlog_listener_backlog{netns="host",namespace="monitoring"}`); len(host) != 0 {
			return fmt.Errorf("host listeners labelled with the exporter's pod: %v", host)
		}
		return nil
	})
}

// queryLabels asks Prometheus for an instant vector and returns each
// series' labels.
func queryLabels(t *testing.T, prom, q string) []map[string]string {
	t.Helper()
	_, body := get(t, http.DefaultClient, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(q))
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	var out []map[string]string
	for _, res := range r.Data.Result {
		out = append(out, res.Metric)
	}
	return out
}

// TestWorkloadTrace: `backlog trace --container NAME` on a podman
// container whose full queue drops the SYNs of clients started inside its
// namespace: every event and the summary name the container.
func TestWorkloadTrace(t *testing.T) {
	testutil.RequireRoot(t)
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	testutil.RequireTool(t, "nsenter")
	testutil.RequireTool(t, "python3")
	p := runtimetest.StartPodman(t)
	name := fmt.Sprintf("bl-trace-%d", os.Getpid())
	id, pid := p.Run(t, name, 8080, 3)
	root := "containers=" + p.Root
	lsListener(t, 8080, 3, "--runtime-root", root, "--container", name)

	cmd := exec.Command(binary, "trace", "--json", "--duration", "4s", "--runtime-root", root, "--container", name)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(1500 * time.Millisecond) // loading takes ~0.3 s
	// Five clients in the container's namespace; the full queue drops
	// their SYNs. They give up after 2 s.
	client := `import socket, time
ss = []
for _ in range(5):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.1", 8080))
    except BlockingIOError: pass
    ss.append(s)
time.sleep(2)`
	if out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "python3", "-c", client).CombinedOutput(); err != nil {
		t.Fatalf("clients: %v: %s", err, out)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("trace: %v", err)
	}
	want := snapshot.Workload{Runtime: "podman", Container: name, ContainerID: id}
	events, summaries := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var v struct {
			Stage    string
			Workload *snapshot.Workload
			Summary  *struct {
				Listeners []struct{ Workload *snapshot.Workload }
			}
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		var ws []*snapshot.Workload
		if v.Summary != nil {
			for _, l := range v.Summary.Listeners {
				ws = append(ws, l.Workload)
				summaries++
			}
		} else {
			ws = append(ws, v.Workload)
			events++
		}
		for _, w := range ws {
			if w == nil || w.Container != want.Container || w.ContainerID != want.ContainerID || w.Runtime != want.Runtime {
				t.Errorf("workload %+v in %s, want container %s", w, line, name)
			}
		}
	}
	t.Logf("%d events, %d summary listeners", events, summaries)
	if events == 0 || summaries != 1 {
		t.Errorf("%d events and %d summary listeners, want some and 1:\n%s", events, summaries, stdout.String())
	}
}
