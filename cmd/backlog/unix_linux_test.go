package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// TestTopAndLsUnix: top streams a full UNIX listener with its peak, ls
// prints it by path, --path picks it and --port leaves it out.
func TestTopAndLsUnix(t *testing.T) {
	ns := labtest.Namespace(t, "bl-unix-cli")
	l := labtest.ListenUnix(t, ns, unix.SOCK_SEQPACKET, "@bl-cli-unix", 2)
	labtest.DialUnix(t, ns, l, 5)

	out, stderr, code := runIn(t, "", "top", "--json", "--count", "2", "--interval", "300ms", "--netns", ns.Name, "--path", "@bl-cli-*")
	if code != 0 {
		t.Fatalf("top: exit %d: %s", code, stderr)
	}
	frames := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d snapshot.Delta
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		frames++
		if len(d.Listeners) != 1 {
			t.Fatalf("frame %d: %+v", frames, d.Listeners)
		}
		ld := d.Listeners[0]
		if ld.Family != "unix" || ld.Path != "@bl-cli-unix" || ld.Type != "seqpacket" || ld.AcceptQueue != 3 || ld.AcceptQueuePeak != 3 || ld.Backlog != 2 || ld.DropsPerSecond != nil {
			t.Errorf("frame %d: %+v", frames, ld)
		}
	}
	if frames != 2 {
		t.Errorf("%d frames, want 2", frames)
	}

	text, _, code := runIn(t, "", "ls", "--netns", ns.Name)
	if code != 0 || !strings.Contains(text, "@bl-cli-unix") || !strings.Contains(text, "3/2") {
		t.Errorf("ls (exit %d):\n%s", code, text)
	}
	text, _, _ = runIn(t, "", "ls", "--netns", ns.Name, "--port", "80")
	if strings.Contains(text, "@bl-cli-unix") {
		t.Errorf("--port 80 kept the UNIX listener:\n%s", text)
	}
	if _, stderr, code := runIn(t, "", "ls", "--path", "[x"); code != 2 || !strings.Contains(stderr, "bad --path pattern") {
		t.Errorf("--path [x: exit %d, %q", code, stderr)
	}
}

// TestTraceCLIUnix runs the real `backlog trace --json` while a UNIX
// listener with backlog 3 refuses 7 of 11 non-blocking connects: each
// refusal is one line naming the listener, its owner, its queue and the
// client, and the summary counts 7. A probe listener tells when the trace
// is attached (loading can take seconds on a busy machine).
func TestTraceCLIUnix(t *testing.T) {
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	ns := labtest.Namespace(t, "bl-trace-cli-unix")
	l := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, filepath.Join(t.TempDir(), "app.sock"), 3)
	probe := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "@bl-trace-probe", 0)
	labtest.DialUnix(t, ns, probe, 1) // full: every further connect is refused
	cmd := exec.Command(binary, "trace", "--json", "--duration", "20s", "--netns", ns.Name, "--no-accept-wait")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by pid
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Probe until the trace reports one.
	attached := false
	// Loading the programs takes seconds in an emulated guest; the loop
	// ends at the first probe reported.
	for deadline := time.Now().Add(90 * time.Second); !attached && time.Now().Before(deadline); {
		labtest.DialUnix(t, ns, probe, 1)
		select {
		case line := <-lines:
			attached = strings.Contains(line, `"path":"@bl-trace-probe"`)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !attached {
		t.Fatalf("the trace reported no probe in 90 s: %s", stderr.String())
	}
	if refused := labtest.DialUnix(t, ns, l, 11); refused != 7 {
		t.Fatalf("%d refused, want 7", refused)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT) // by pid: it prints the summary and exits
	var got int
	var summary struct {
		Summary struct {
			Unix []struct {
				Path    string `json:"path"`
				Refused int    `json:"refused"`
			} `json:"unix_refused"`
			UnixHook string `json:"unix_hook"`
		} `json:"summary"`
	}
	for line := range lines {
		if strings.HasPrefix(line, `{"summary"`) {
			if err := json.Unmarshal([]byte(line), &summary); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var u trace.UnixRefusal
		if err := json.Unmarshal([]byte(line), &u); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if u.Path == probe.Name {
			continue
		}
		got++
		if u.Stage != trace.StageUnixRefused || u.Path != l.Name || u.Client.PID != os.Getpid() || u.Inode != l.Inode ||
			u.AcceptQueue == nil || *u.AcceptQueue != 4 || *u.Backlog != 3 || len(u.Processes) != 1 || u.Processes[0].PID != os.Getpid() {
			t.Errorf("line %s", line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("trace: %v: %s", err, stderr.String())
	}
	var app int
	for _, s := range summary.Summary.Unix {
		if s.Path == l.Name {
			app = s.Refused
		}
	}
	if got != 7 || app != 7 {
		t.Errorf("%d lines, summary %+v; want 7 refusals of %s", got, summary.Summary.Unix, l.Name)
	}
	// The refusals come from fexit wherever trampolines load, as accept
	// waits do (docs/kernels.md's row for this kernel), else from the
	// system call hooks.
	if want := kernelsTable(t, "accept wait hook"); want != "" && summary.Summary.UnixHook != want {
		t.Errorf("unix_hook %q; docs/kernels.md's accept wait hook for this kernel is %q, and UNIX refusals use the same kind", summary.Summary.UnixHook, want)
	}
}

// TestDoctorBPFUnix: doctor --bpf counts each refused UNIX connect as
// evidence of the full queue.
func TestDoctorBPFUnix(t *testing.T) {
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	ns := labtest.Namespace(t, "bl-doctor-unix")
	l := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "@bl-doctor-unix", 2)
	cmd := exec.Command(binary, "doctor", "--bpf", "--duration", "3s", "--netns", ns.Name)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by pid
	// "watching" comes once the programs are attached.
	sc := bufio.NewScanner(errPipe)
	var stderr []string
	for sc.Scan() {
		stderr = append(stderr, sc.Text())
		if strings.Contains(sc.Text(), "watching for") {
			break
		}
	}
	if refused := labtest.DialUnix(t, ns, l, 6); refused != 3 {
		t.Fatalf("%d refused, want 3", refused)
	}
	for sc.Scan() {
		stderr = append(stderr, sc.Text())
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitTrouble {
		t.Fatalf("exit %v, want 3: %s\n%s", err, strings.Join(stderr, "\n"), stdout.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "[unix-accept-queue-full]") || !strings.Contains(out, "@bl-doctor-unix") || !strings.Contains(out, "refused_connects=3") {
		t.Errorf("doctor said:\n%s", out)
	}
}
