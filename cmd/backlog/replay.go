package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/replay"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// replayFlags choose a recording and a window of it: the source that
// top --replay, doctor --from, ls --from and report read instead of the
// kernel.
type replayFlags struct {
	path, since, until string
}

func (r *replayFlags) register(fs *flag.FlagSet, name, usage string) {
	if name != "" {
		fs.StringVar(&r.path, name, "", usage+": a `file` or directory of recordings (docs/record.md)")
	}
	fs.StringVar(&r.since, "since", "", "with a recording: start of the window, `TIME` as 2026-12-01T03:00:00Z, \"2026-12-01 03:00\", or 03:00:00 on the recording's first day (local time)")
	fs.StringVar(&r.until, "until", "", "with a recording: end of the window, `TIME` as for --since")
}

// window parses --since and --until against the recording's first day.
func (r *replayFlags) window() (record.Window, error) {
	var w record.Window
	if r.since == "" && r.until == "" {
		return w, nil
	}
	first, err := firstFrameTime(r.path)
	if err != nil {
		return w, err
	}
	if w.Since, err = parseWhen(r.since, first); err != nil {
		return w, usageError{fmt.Errorf("backlog: --since: %w", err)}
	}
	if w.Until, err = parseWhen(r.until, first); err != nil {
		return w, usageError{fmt.Errorf("backlog: --until: %w", err)}
	}
	if !w.Since.IsZero() && !w.Until.IsZero() && w.Until.Before(w.Since) {
		return w, usageError{errors.New("backlog: --until is before --since")}
	}
	return w, nil
}

// source is the recording as the views read it, with the live filters.
func (r *replayFlags) source(filters *filterFlags, stderr io.Writer) (replay.Source, error) {
	if r.path == "" && (r.since != "" || r.until != "") {
		return replay.Source{}, usageError{errors.New("backlog: --since and --until need a recording")}
	}
	w, err := r.window()
	if err != nil {
		return replay.Source{}, err
	}
	opts := collect.Options{Ports: filters.ports, Paths: filters.paths, PIDs: filters.pids, Processes: filters.processes, Pods: filters.pods, Containers: filters.containers}
	spec := filters.netns
	return replay.Source{Path: r.path, Window: w, Filter: func(s *snapshot.Snapshot) { collect.Filter(s, opts, spec) }}, nil
}

// firstFrameTime is when the recording's first frame was taken.
func firstFrameTime(path string) (time.Time, error) {
	var t time.Time
	_, err := record.Read(path, record.Window{}, func(f *record.Frame) error {
		t = f.Snapshot.TakenAt
		return record.ErrStop
	})
	if err == nil && t.IsZero() {
		err = fmt.Errorf("%s holds no frame", path)
	}
	return t, err
}

// whenLayouts are the forms --since, --until and --at accept; those
// without a zone are local time, those without a date on the day of ref.
var whenLayouts = []struct {
	layout string
	date   bool
}{
	{time.RFC3339Nano, true},
	{"2006-01-02T15:04:05", true},
	{"2006-01-02 15:04:05", true},
	{"2006-01-02T15:04", true},
	{"2006-01-02 15:04", true},
	{"15:04:05", false},
	{"15:04", false},
}

// parseWhen reads a point in time; "" is the zero time (an open bound).
func parseWhen(s string, ref time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range whenLayouts {
		t, err := time.ParseInLocation(l.layout, s, time.Local)
		if err != nil {
			continue
		}
		if !l.date {
			r := ref.In(time.Local)
			t = time.Date(r.Year(), r.Month(), r.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.Local)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give 2026-12-01T03:00:00Z, \"2026-12-01 03:00\" or 03:00:00", s)
}

// reportDamage says, one line each, what of the recording was skipped.
func reportDamage(stderr io.Writer, dmg []record.Damage) {
	for _, d := range dmg {
		fmt.Fprintf(stderr, "backlog: recording: %s\n", d)
	}
}
