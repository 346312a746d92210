package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runTo runs the real binary with stdout on f and returns its stderr and
// exit code; it is killed after 30 s.
func runTo(t *testing.T, f *os.File, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var e bytes.Buffer
	cmd.Stdout, cmd.Stderr = f, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("backlog %v did not end in 30 s; stderr %q", args, e.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return e.String(), 0
}

// oneLine fails unless s is exactly one line with none of a Go crash's
// words.
func oneLine(t *testing.T, what, s string) {
	t.Helper()
	s = strings.TrimSpace(s)
	if s == "" || strings.Contains(s, "\n") || strings.Contains(s, "panic") || strings.Contains(s, "goroutine") {
		t.Errorf("%s: stderr %q; want one line", what, s)
	}
}

// TestWriteErrors: output that cannot be written is a failure with one
// line, for every command that writes output, and a command that streams
// stops at once.
func TestWriteErrors(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{
		{"version"}, {"help"}, {"ls", "-h"}, {"lab", "-h"},
		{"ls", "--netns", "self"}, {"ls", "--netns", "self", "--json"},
		{"top", "--netns", "self", "--json"}, // runs until interrupted otherwise
		{"doctor", "--netns", "self", "--duration", "1s"},
		{"doctor", "--netns", "self", "--duration", "1s", "--json"},
	} {
		stderr, code := runTo(t, full, args...)
		if code != exitFailure || !strings.Contains(stderr, "backlog: writing the output: write /dev/stdout: no space left on device") {
			t.Errorf("backlog %v > /dev/full: exit %d, stderr %q; want exit 1 and the write error", args, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "writing the output") || strings.Count(stderr, "writing the output") != 1 {
			t.Errorf("backlog %v > /dev/full: the write error is not said once, last: %q", args, stderr)
		}
	}
}
