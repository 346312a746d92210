package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
)

// TestTraceCLI runs the real `backlog trace --json` on a namespace while 20
// clients overflow a backlog-5 listener: every syn event names that
// listener and one of the clients, and their number equals the namespace's
// ListenOverflows; the summary agrees.
func TestTraceCLI(t *testing.T) {
	testutil.RequireRoot(t)
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	ns, l := overflow(t)
	cmd := exec.Command(binary, "trace", "--json", "--netns", ns.Name)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by pid
	// The window is set by events, not by sleeps, so a loaded machine
	// cannot move a retransmission outside it: the clients connect once
	// the trace says it is attached, and close (a SYN-SENT socket leaves
	// silently, tcp_close()) before the trace is stopped.
	waitTracing(t, stderr)
	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 20)
	if err != nil {
		t.Fatal(err)
	}
	peers := map[uint16]bool{}
	for _, p := range c.LocalPorts() {
		peers[p] = true
	}
	time.Sleep(1500 * time.Millisecond) // the first SYN retransmission is due after 1 s
	c.Close()
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT) // by pid: it prints the summary and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("trace: %v", err)
	}
	snap, err := collect.Collect(context.Background(), collect.Options{Targets: []collect.Target{{Path: ns.Path}}, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	overflows := *snap.Namespaces[0].Counters.ListenOverflows

	var syn uint64
	var summary struct {
		Summary struct {
			Listeners []struct {
				Listener string            `json:"listener"`
				Drops    map[string]uint64 `json:"drops"`
			} `json:"listeners"`
		} `json:"summary"`
	}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"summary"`) {
			if err := json.Unmarshal(sc.Bytes(), &summary); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var e trace.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		// Mostly SYNs met the full queue; a client whose SYN got in
		// just before it filled has its final ACK dropped (stage ack,
		// seen on a slow emulated guest). Both count in ListenOverflows.
		if e.Stage != trace.StageSyn && e.Stage != trace.StageAck || e.Listener != netip.AddrPortFrom(l.Addr, l.Port) || !peers[e.Peer.Port()] || e.Backlog != 5 || e.AcceptQueue != 6 {
			t.Errorf("event %+v: want a syn or ack drop on %s from one of the clients, queue 6/5", e, netip.AddrPortFrom(l.Addr, l.Port))
		}
		syn++
	}
	t.Logf("syn and ack events %d, ListenOverflows %d", syn, overflows)
	if syn == 0 || syn != overflows {
		t.Errorf("%d syn and ack events, ListenOverflows %d: want equal and > 0", syn, overflows)
	}
	if ls := summary.Summary.Listeners; len(ls) != 1 || ls[0].Drops["syn"]+ls[0].Drops["ack"] != syn {
		t.Errorf("summary %+v, want %d syn and ack drops on one listener", summary, syn)
	}
}

// TestTraceNoAcceptWait: with --no-accept-wait the summary says accepts
// were not measured, not that none happened.
func TestTraceNoAcceptWait(t *testing.T) {
	testutil.RequireRoot(t)
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	ns, _ := overflow(t)
	out, stderr, code := runIn(t, "", "trace", "--no-accept-wait", "--duration", "1s", "--netns", ns.Name)
	if code != 0 || strings.Contains(out, "no accepted connection") || !strings.Contains(out, "not measured") {
		t.Errorf("exit %d:\n%s%s", code, out, stderr)
	}
}

// waitTracing reads the trace's stderr until it says its programs are
// attached, then keeps draining it so the trace never blocks on it.
func waitTracing(t *testing.T, stderr io.Reader) {
	t.Helper()
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "backlog: tracing") {
				said = true
				attached <- true
			}
		}
		if !said {
			attached <- false
		}
	}()
	select {
	case ok := <-attached:
		if !ok {
			t.Fatal("trace exited before it said it was tracing")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("trace did not attach in 60 s")
	}
}
