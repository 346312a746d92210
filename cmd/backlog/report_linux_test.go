package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
)

// recordedOverflow records a lab namespace (with eBPF when possible) in
// which a listener of backlog 5 is quiet for a while, then overflows.
func recordedOverflow(t *testing.T) (dir string, ns *lab.Namespace, l *lab.Listener, frames []*record.Frame) {
	t.Helper()
	testutil.RequireRoot(t)
	ns = labtest.Namespace(t, "bl-report")
	l = labtest.Listen(t, ns, "127.0.0.1:0", 5)
	dir = recordDir(t)
	args := []string{"--netns", ns.Name, "--output", dir}
	if trace.Check() == nil {
		args = append(args, "--bpf")
	}
	stop := startRecorder(t, args...)
	waitFrames(t, dir, 2)
	labtest.Dial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), 20)
	time.Sleep(4 * time.Second)
	stop()
	frames, dmg := readFrames(t, dir)
	if len(dmg) != 0 || len(frames) < 5 {
		t.Fatalf("%d frames, damage %v", len(frames), dmg)
	}
	return dir, ns, l, frames
}

// listenerKey finds the lab listener's key in the recording.
func listenerKey(t *testing.T, frames []*record.Frame, port uint16) snapshot.ListenerKey {
	t.Helper()
	for _, f := range frames {
		for _, rl := range f.Snapshot.Listeners {
			if rl.Port == port {
				return rl.Key()
			}
		}
	}
	t.Fatalf("port %d not recorded", port)
	return snapshot.ListenerKey{}
}

// TestReportInChromium renders the report in a real headless Chromium,
// offline: no request but the page itself, none failed, no console error,
// a screenshot; the overflowing listener's plotted points are the recorded
// ones.
func TestReportInChromium(t *testing.T) {
	dir, ns, l, frames := recordedOverflow(t)
	out := filepath.Join(t.TempDir(), "report.html")
	if _, stderr, code := runIn(t, "", "report", dir, "--netns", ns.Name, "-o", out); code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	key := listenerKey(t, frames, l.Port)
	id := fmt.Sprintf("l-%d-%d", key.Netns, key.Inode)
	page := testutil.ChromiumPage(t, "file://"+out, "Number(document.body.dataset.charts) > 0",
		`JSON.stringify({charts: backlogCharts.map(c => ({id: c.id, labels: c.labels, data: c.data})),
		  summary: document.getElementById("summary").innerText, findings: document.getElementById("findings").innerText})`)
	if len(page.Requests) != 1 || page.Requests[0] != "file://"+out {
		t.Errorf("requests beyond the page: %q", page.Requests)
	}
	if len(page.Failed) != 0 || len(page.Console) != 0 {
		t.Errorf("failed requests %q, console errors %q", page.Failed, page.Console)
	}
	shot := filepath.Join(t.TempDir(), "report.png")
	if a := os.Getenv("BACKLOG_ARTIFACTS"); a != "" {
		shot = filepath.Join(a, "report.png") // kept for a person to look at
	}
	os.WriteFile(shot, page.Screenshot, 0o644)
	img, err := png.Decode(bytes.NewReader(page.Screenshot))
	if err != nil || img.Bounds().Dx() < 1000 || img.Bounds().Dy() < 900 {
		t.Fatalf("screenshot: %v %v", err, img)
	}
	t.Logf("screenshot %s (%v)", shot, img.Bounds())

	var got struct {
		Charts []struct {
			ID     string
			Labels []string
			Data   [][]*float64
		}
		Summary, Findings string
	}
	var s string
	if err := json.Unmarshal(page.Value, &s); err != nil || json.Unmarshal([]byte(s), &got) != nil {
		t.Fatalf("page value %s", page.Value)
	}
	var accept []([]*float64)
	for _, c := range got.Charts {
		if c.ID == id+"-accept" {
			accept = c.Data
			if strings.Join(c.Labels, ",") != "peak,accept queue,backlog" {
				t.Errorf("labels %v", c.Labels)
			}
		}
	}
	if accept == nil {
		t.Fatalf("no accept-queue plot %s among %d charts", id, len(got.Charts))
	}
	// Every recorded frame is one point: time, peak, queue, backlog.
	if len(accept[0]) != len(frames) {
		t.Fatalf("%d points, %d frames", len(accept[0]), len(frames))
	}
	full := 0
	for i, f := range frames {
		rl := f.Snapshot.Listener(key)
		tt := float64(f.Snapshot.TakenAt.UnixNano()) / 1e9
		if accept[0][i] == nil || *accept[0][i] != tt {
			t.Fatalf("point %d at %v, frame at %v", i, accept[0][i], tt)
		}
		if rl == nil {
			continue
		}
		p, q, b := accept[1][i], accept[2][i], accept[3][i]
		if p == nil || q == nil || b == nil || *p != float64(f.Peaks[key]) || *q != float64(rl.AcceptQueue) || *b != float64(rl.Backlog) {
			t.Fatalf("point %d: peak %v queue %v backlog %v; recorded %d %d %d", i, p, q, b, f.Peaks[key], rl.AcceptQueue, rl.Backlog)
		}
		if *p > *b {
			full++
		}
	}
	if full == 0 || *accept[1][0] != 0 {
		t.Errorf("the plot shows no overflow after a quiet start (%d full points)", full)
	}
	if !strings.Contains(got.Summary, netip.AddrPortFrom(l.Addr, l.Port).String()) || !strings.Contains(got.Summary, "6 / 5") {
		t.Errorf("summary table:\n%s", got.Summary)
	}
	if !strings.Contains(got.Findings, "accept-queue-overflow") {
		t.Errorf("findings table:\n%s", got.Findings)
	}
}

// TestReportOpenMetricsBackfill: the OpenMetrics export goes through the
// real promtool into a real Prometheus, which then answers the recorded
// peak at the recorded time.
func TestReportOpenMetricsBackfill(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	prometheus := testutil.RequireTool(t, "prometheus")
	dir, ns, l, frames := recordedOverflow(t)
	om := filepath.Join(t.TempDir(), "backfill.om")
	if _, stderr, code := runIn(t, "", "report", dir, "--netns", ns.Name, "--openmetrics", "-o", om); code != 0 {
		t.Fatalf("report --openmetrics: exit %d: %s", code, stderr)
	}
	data := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", om, data).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(om)
		t.Fatalf("promtool: %v: %s\n%.2000s", err, out, b)
	}
	config := filepath.Join(t.TempDir(), "prometheus.yml")
	os.WriteFile(config, []byte("global:\n  scrape_interval: 1m\n"), 0o644)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	var log bytes.Buffer
	cmd := exec.Command(prometheus, "--config.file="+config, "--storage.tsdb.path="+data, "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // by pid: the server this test started
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
	key := listenerKey(t, frames, l.Port)
	sel := fmt.Sprintf(`{netns=%q,port="%d"}`, ns.Name, l.Port)
	checked := 0
	for _, f := range frames {
		rl := f.Snapshot.Listener(key)
		if rl == nil {
			continue
		}
		at := strconv.FormatFloat(float64(f.Snapshot.TakenAt.UnixMilli())/1000, 'f', -1, 64)
		peak := queryAt(t, addr, "backlog_listener_accept_queue_peak"+sel, at)
		backlog := queryAt(t, addr, "backlog_listener_backlog"+sel, at)
		if len(peak) != 1 || peak[0] != float64(f.Peaks[key]) || len(backlog) != 1 || backlog[0] != float64(rl.Backlog) {
			t.Fatalf("at %s Prometheus says peak %v backlog %v; recorded %d of %d", at, peak, backlog, f.Peaks[key], rl.Backlog)
		}
		if f.Peaks[key] > rl.Backlog {
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no overflow was recorded to check")
	}
	last := frames[len(frames)-1]
	at := strconv.FormatFloat(float64(last.Snapshot.TakenAt.UnixMilli())/1000, 'f', -1, 64)
	if v := queryAt(t, addr, `backlog_netns_tcpext_total{counter="ListenOverflows",netns="`+ns.Name+`"}`, at); len(v) != 1 || v[0] == 0 {
		t.Errorf("ListenOverflows at the end: %v", v)
	}
}

// queryAt asks Prometheus for an instant vector at a time.
func queryAt(t *testing.T, prom, q, at string) []float64 {
	t.Helper()
	_, body := get(t, http.DefaultClient, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(q)+"&time="+at)
	var r struct {
		Status string
		Data   struct{ Result []struct{ Value [2]any } }
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	var vs []float64
	for _, res := range r.Data.Result {
		s, _ := res.Value[1].(string)
		v, _ := strconv.ParseFloat(s, 64)
		vs = append(vs, v)
	}
	return vs
}
