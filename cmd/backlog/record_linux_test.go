package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// recordDir returns a directory only root can write, as the recorder wants.
func recordDir(t *testing.T) string {
	d := t.TempDir()
	os.Chmod(d, 0o750)
	return d
}

// readFrames reads a whole recording.
func readFrames(t *testing.T, path string) ([]*record.Frame, []record.Damage) {
	t.Helper()
	var fs []*record.Frame
	dmg, err := record.Read(path, record.Window{}, func(f *record.Frame) error { fs = append(fs, f); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return fs, dmg
}

// TestRecordRefusesUnsafeOutput: the CLI refuses symlinks and shared
// directories with one line and exit 1, and creates nothing.
func TestRecordRefusesUnsafeOutput(t *testing.T) {
	testutil.RequireRoot(t)
	shared := t.TempDir()
	os.Chmod(shared, 0o777|os.ModeSticky)
	safe := recordDir(t)
	victim := filepath.Join(recordDir(t), "victim")
	os.WriteFile(victim, []byte("keep\n"), 0o600)
	os.Symlink(victim, filepath.Join(safe, "link.blr"))
	for _, c := range []struct{ path, says string }{
		{filepath.Join(shared, "rec.blr"), "writable by group or others"},
		{shared, "writable by group or others"},
		{filepath.Join(safe, "link.blr"), "symbolic link"},
	} {
		_, stderr, code := runIn(t, "", "record", "--netns", "self", "--duration", "1s", "--output", c.path)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != exitFailure || !strings.Contains(last, "refusing to record") || !strings.Contains(last, c.says) {
			t.Errorf("record --output %s: exit %d, stderr %q", c.path, code, stderr)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	if ents, _ := os.ReadDir(shared); len(ents) != 0 {
		t.Errorf("files created in the shared directory: %v", ents)
	}
	if _, stderr, code := runIn(t, "", "record"); code != exitUsage || !strings.Contains(stderr, "--output is required") {
		t.Errorf("record without --output: exit %d, %q", code, stderr)
	}
}

// TestRecordOverflow records a lab overflow and reads back what ss sees:
// accept queue 6 of backlog 5, and the sampled peak 6.
func TestRecordOverflow(t *testing.T) {
	run := startOverflow(t)
	dir := recordDir(t)
	port := strconv.Itoa(int(run.Listener.Port))
	_, stderr, code := runIn(t, "", "record", "--netns", run.Server.Name, "--interval", "500ms", "--duration", "3s", "--output", dir)
	if code != 0 {
		t.Fatalf("record: exit %d: %s", code, stderr)
	}
	ss := testutil.SSListeners(t, run.Server.Name, "sport = :"+port)
	fs, dmg := readFrames(t, dir)
	// Frames every 500 ms for 3 s after the first; a slow machine (an
	// emulated guest) collects more slowly than that, so ask only for the
	// key frame and one after it.
	if len(dmg) != 0 || len(fs) < 2 {
		t.Fatalf("%d frames, damage %v", len(fs), dmg)
	}
	last := fs[len(fs)-1]
	var l *snapshot.Listener
	for i := range last.Snapshot.Listeners {
		if last.Snapshot.Listeners[i].Port == run.Listener.Port {
			l = &last.Snapshot.Listeners[i]
		}
	}
	if l == nil || len(ss) != 1 {
		t.Fatalf("listener :%s not recorded (ss %v)", port, ss)
	}
	if int(l.AcceptQueue) != ss[0].RecvQ || int(l.Backlog) != ss[0].SendQ || l.AcceptQueue != 6 || last.Peaks[l.Key()] != 6 {
		t.Errorf("recorded %d/%d peak %d; ss Recv-Q %d Send-Q %d", l.AcceptQueue, l.Backlog, last.Peaks[l.Key()], ss[0].RecvQ, ss[0].SendQ)
	}
	if h := fs[0].Header; h == nil || h.Interval != 0.5 || h.Sample != 0.1 || h.BPF {
		t.Errorf("header %+v", h)
	}
}

// TestRecordSystemdUnit: the unit docs/deployment.md gives passes
// systemd-analyze verify, and its command line records into a directory
// like the one StateDirectory= makes (root, 0750).
func TestRecordSystemdUnit(t *testing.T) {
	testutil.RequireRoot(t)
	analyze := testutil.RequireTool(t, "systemd-analyze")
	doc, err := os.ReadFile("../../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	_, unit, ok := strings.Cut(string(doc), "# /etc/systemd/system/backlog-record.service\n")
	if !ok {
		t.Fatal("docs/deployment.md has no backlog-record.service")
	}
	unit, _, _ = strings.Cut(unit, "```")
	var execStart []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	if len(execStart) < 2 || execStart[0] != "/usr/local/bin/backlog" || execStart[1] != "record" {
		t.Fatalf("ExecStart %q", execStart)
	}
	path := filepath.Join(t.TempDir(), "backlog-record.service")
	os.WriteFile(path, []byte(strings.Replace(unit, "/usr/local/bin/backlog", binary, 1)), 0o644)
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	dir := recordDir(t)
	args := slices.Clone(execStart[2:])
	for i := range args {
		if args[i] == "/var/lib/backlog" {
			args[i] = dir
		}
	}
	_, stderr, code := runIn(t, "", append(append([]string{"record"}, args...), "--netns", "self", "--duration", "2500ms")...)
	if code != 0 {
		t.Fatalf("the unit's command: exit %d: %s", code, stderr)
	}
	if fs, dmg := readFrames(t, dir); len(fs) < 2 || len(dmg) != 0 {
		t.Errorf("%d frames, damage %v", len(fs), dmg)
	}
}
