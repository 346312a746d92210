package scenario

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/testutil"
)

func execute(t *testing.T, name string, p Params) *Result {
	t.Helper()
	testutil.RequireRoot(t)
	res, err := Execute(context.Background(), name, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Checks {
		t.Logf("%-5v %s: got %d, want %s %d", c.OK, c.Rule, c.Got, c.Op, c.Want)
	}
	t.Logf("moved %v observed %v", res.Moved, res.Observed)
	if !res.OK() {
		t.Errorf("%s: a prediction failed", name)
	}
	if len(res.Checks) == 0 {
		t.Errorf("%s checked nothing", name)
	}
	assertNothingLeft(t)
	return res
}

// assertNothingLeft: no lab namespace of this process remains (names are
// Prefix-SCENARIO-PID-N; other runs on the machine keep theirs).
func assertNothingLeft(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], Prefix+"-") && strings.Contains(f[0], fmt.Sprintf("-%d-", os.Getpid())) {
			t.Errorf("namespace left behind: %s", f[0])
		}
	}
}

func TestNobind(t *testing.T) {
	res := execute(t, "nobind", Params{})
	if res.Observed["port"] == 0 {
		t.Error("no port")
	}
}

func TestCapped(t *testing.T) {
	res := execute(t, "capped", Params{Backlog: 10000, Somaxconn: 16384})
	if res.Observed["backlog_before"] != 4096 || res.Observed["backlog_after_relisten"] != 10000 {
		t.Errorf("observed %v", res.Observed)
	}
}

func TestOverflow(t *testing.T) {
	res := execute(t, "overflow", Params{Backlog: 5, Clients: 20, Duration: 1600 * time.Millisecond})
	// The SYN retransmission schedule it explains is this kernel's: with
	// tcp_syn_linear_timeouts (a new namespace starts at 4) or without.
	want := "1, 3, 7, 15 s after it (exponential backoff: this kernel has no net.ipv4.tcp_syn_linear_timeouts, which Linux 6.5 added)"
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"); err == nil {
		want = "1, 2, 3, 4, 5, 7, 11 s after it (net.ipv4.tcp_syn_linear_timeouts=4"
	}
	if !strings.Contains(res.Explanation, "retransmit their SYN "+want) {
		t.Errorf("explanation %q\nwant the schedule %q", res.Explanation, want)
	}
}

func TestOverflowAccepting(t *testing.T) {
	res := execute(t, "overflow", Params{Backlog: 5, Clients: 20, AcceptRate: 50, Duration: time.Second})
	if res.Observed["accepted"] == 0 {
		t.Errorf("nothing accepted: %v", res.Observed)
	}
}

func TestSynflood(t *testing.T) {
	for _, p := range []Params{
		{Syncookies: 0},
		{Syncookies: 1},
		{Syncookies: 2},
		{Syncookies: 0, Backlog: 4096, Clients: 200, MaxSynBacklog: 128},
	} {
		t.Run("", func(t *testing.T) {
			p.Duration = 1200 * time.Millisecond
			execute(t, "synflood", p)
		})
	}
}

func TestAbort(t *testing.T) {
	for _, abort := range []int{1, 0} {
		var p Params
		p.SetAbort(abort)
		execute(t, "abort", p)
	}
}

func TestBadParams(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []Params{{Clients: MaxClients + 1}, {Duration: time.Hour}, {Syncookies: 3}, {Backlog: -1}} {
		if _, err := Execute(context.Background(), "overflow", p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if _, err := Execute(context.Background(), "nope", Params{}); err == nil {
		t.Error("unknown scenario accepted")
	}
	assertNothingLeft(t)
}

// TestUnixOverflow: unix_recvq_full() and the somaxconn cap, checked by the
// scenario itself, with backlogs 1, 5 and 128.
func TestUnixOverflow(t *testing.T) {
	for _, c := range []struct{ backlog, clients int }{{1, 3}, {5, 10}, {128, 140}} {
		res := execute(t, "unix-overflow", Params{Backlog: c.backlog, Clients: c.clients, Somaxconn: 200})
		o := res.Observed
		if o["accept_queue"] != int64(c.backlog+1) || o["clients_refused_eagain"] != int64(c.clients-c.backlog-1) || o["capped_backlog"] != 200 {
			t.Errorf("backlog %d, %d clients: observed %v", c.backlog, c.clients, o)
		}
		if len(res.Listeners) != 2 || res.Listeners[0].Family != "unix" {
			t.Errorf("listeners %+v", res.Listeners)
		}
	}
}

// TestReuseport: each SO_REUSEPORT member fills on its own; closing one
// resets the clients in its queue.
func TestReuseport(t *testing.T) {
	res := execute(t, "reuseport", Params{Backlog: 4, Clients: 30})
	if len(res.Listeners) != 2 || res.Listeners[0].Inode == res.Listeners[1].Inode || res.Listeners[0].Port != res.Listeners[1].Port {
		t.Errorf("members %+v", res.Listeners)
	}
	if res.Observed["clients_reset"] == 0 {
		t.Errorf("no client reset when a full member closed: %v", res.Observed)
	}
}
