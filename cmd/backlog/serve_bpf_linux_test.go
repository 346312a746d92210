package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
)

// TestServeBPF: serve --bpf exports drop events by stage that equal the
// namespace's ListenOverflows, and the accept-wait histogram of accepted
// connections; the scrape stays promtool-clean.
func TestServeBPF(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	testutil.RequireRoot(t)
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	ns, l := overflow(t)
	s := startServe(t, "--bpf", "--netns", ns.Name)
	dial(t, ns, l, 20)
	// Accept three after a pause, so they have waited in the queue.
	time.Sleep(300 * time.Millisecond)
	for range 3 {
		l.SetDeadline(time.Now().Add(time.Second))
		if _, err := l.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	labels := fmt.Sprintf(`address="127\.0\.0\.1",container="",namespace="",netns=%q,pod="",port="%d",process="[^"]*",socket_inode="[0-9]+"`, ns.Name, l.Port)
	synRe := regexp.MustCompile(`\nbacklog_listener_drop_events_total\{` + labels + `,stage="syn"\} ([0-9]+)\n`)
	overRe := regexp.MustCompile(fmt.Sprintf(`\nbacklog_netns_tcpext_total\{container="",counter="ListenOverflows",namespace="",netns=%q,pod=""\} ([0-9]+)\n`, ns.Name))
	waitRe := regexp.MustCompile(`\nbacklog_listener_accept_wait_seconds_count\{` + labels + `\} ([0-9]+)\n`)
	var body string
	testutil.Eventually(t, 10*time.Second, func() error {
		_, body = get(t, http.DefaultClient, "http://"+s.addr+"/metrics")
		syn, over, wait := synRe.FindStringSubmatch(body), overRe.FindStringSubmatch(body), waitRe.FindStringSubmatch(body)
		if syn == nil || over == nil || wait == nil || syn[1] != over[1] || over[1] == "0" || wait[1] != "3" {
			return fmt.Errorf("syn events %v, ListenOverflows %v, accept waits %v: want events = ListenOverflows > 0 and 3 waits", syn, over, wait)
		}
		t.Logf("syn drop events %s = ListenOverflows %s; accept waits %s", syn[1], over[1], wait[1])
		return nil
	})
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
