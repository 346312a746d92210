package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/testutil"
)

type doctorOutput struct {
	Duration float64          `json:"duration_seconds"`
	Findings []doctor.Finding `json:"findings"`
}

// TestDoctorPythonServer diagnoses a server no one here wrote: Python's
// http.server (socketserver listens with backlog 5), its process paused so
// it accepts nothing, and a burst of 20 clients.
func TestDoctorPythonServer(t *testing.T) {
	testutil.RequireRoot(t)
	py := testutil.RequireTool(t, "/usr/bin/python3")
	ns := labtest.Namespace(t, "bl-doctor")
	port := 18000 + time.Now().Nanosecond()%1000
	srv := exec.Command("ip", "netns", "exec", ns.Name, py, "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(syscall.SIGCONT)
		srv.Process.Kill() // by pid: the server this test started
		srv.Wait()
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(testutil.SSListeners(t, ns.Name, "sport", "=", fmt.Sprintf(":%d", port))) != 1 {
			return fmt.Errorf("python is not listening on %d yet", port)
		}
		return nil
	})
	if err := srv.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	labtest.Dial(t, ns, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), 20)

	out, stderr, code := runIn(t, "", "doctor", "--netns", ns.Name, "--duration", "2s", "--json")
	if code != exitTrouble {
		t.Fatalf("exit %d, want 3: %s\n%s", code, stderr, out)
	}
	var res doctorOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f := res.Findings[0]
	if f.Rule != "accept-queue-overflow" || f.Severity != "critical" || f.Listener != net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) {
		t.Fatalf("first finding %+v", f)
	}
	if len(f.Processes) != 1 || f.Processes[0].PID != srv.Process.Pid || !strings.HasPrefix(f.Processes[0].Comm, "python") {
		t.Errorf("processes %+v, want python (%d)", f.Processes, srv.Process.Pid)
	}
	if f.Evidence["backlog"] != 5 || f.Evidence["accept_queue_peak"] != 6 || f.Evidence["listener_drops"] <= 0 {
		t.Errorf("evidence %v", f.Evidence)
	}
	// The text form says the same in words. In a 1 s window the waiting
	// clients may retransmit no SYN, so the queue may show full without
	// new drops: accept-queue-full, a warning, still exit 3.
	text, _, code := runIn(t, "", "doctor", "--netns", ns.Name, "--duration", "1s")
	if code != exitTrouble || !strings.Contains(text, "[accept-queue-") || !strings.Contains(text, "python") {
		t.Errorf("text (exit %d):\n%s", code, text)
	}
}

// TestDoctorQuietCLI: a quiet namespace is healthy, exit 0.
func TestDoctorQuietCLI(t *testing.T) {
	ns := labtest.Namespace(t, "bl-doctor-quiet")
	out, stderr, code := runIn(t, "", "doctor", "--netns", ns.Name, "--duration", "1s")
	if code != 0 || !strings.HasPrefix(out, "INFO [healthy]") {
		t.Errorf("exit %d: %s\n%s", code, stderr, out)
	}
	if _, _, code := runIn(t, "", "doctor", "--duration", "1h"); code != exitUsage {
		t.Errorf("--duration 1h: exit %d, want 2", code)
	}
}
