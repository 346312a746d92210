package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestExitCodeInterrupted: a command cut short by a signal (ls, doctor,
// lab mid-run) fails with one line; only commands whose normal end is a
// signal (top, trace, serve) return nil themselves.
func TestExitCodeInterrupted(t *testing.T) {
	for _, err := range []error{context.Canceled, fmt.Errorf("collecting: %w", context.Canceled), errInterrupted} {
		var b strings.Builder
		if code := exitCode(err, &b); code != exitFailure || strings.Count(b.String(), "\n") != 1 {
			t.Errorf("exitCode(%v) = %d, stderr %q; want 1 and one line", err, code, b.String())
		}
	}
	var b strings.Builder
	if code := exitCode(errors.Join(troubleError{}), &b); code != exitTrouble || b.Len() != 0 {
		t.Errorf("trouble: exit %d, stderr %q", code, b.String())
	}
}

// TestHelpSaysWhatNoCommandDoes: `backlog help` tells the truth about
// `backlog` alone: top on a terminal, ls otherwise.
func TestHelpSaysWhatNoCommandDoes(t *testing.T) {
	var b strings.Builder
	usage(&b)
	if !strings.Contains(b.String(), "runs top on a terminal and ls otherwise") {
		t.Errorf("help:\n%s", b.String())
	}
}
