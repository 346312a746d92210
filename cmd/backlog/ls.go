package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/hugeheap"
	"github.com/backlog-dev/backlog/internal/render"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// report tells a person, on stderr, what the snapshot could not see: the
// warnings and what refused processes hide on one line, then one line per
// namespace that failed.
func report(stderr io.Writer, snap *snapshot.Snapshot) {
	if line := notes(snap); line != "" {
		fmt.Fprintf(stderr, "backlog: %s\n", line)
	}
	for _, ns := range snap.Namespaces {
		if ns.Error != "" {
			fmt.Fprintf(stderr, "backlog: namespace %s: %s\n", ns.Name, ns.Error)
		}
	}
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// ls reads once and exits: its heap in huge pages, a few faults instead
	// of thousands. Without them it is only slower, so an error is ignored.
	_ = hugeheap.Advise()
	fs := newFlagSet("ls", stdout)
	asJSON := fs.Bool("json", false, "print one JSON object (docs/json.md)")
	var filters filterFlags
	filters.register(fs)
	from := fs.String("from", "", "print a recorded snapshot instead (with --at): a `file` or directory of recordings (docs/record.md); default with --at: "+defaultRecording)
	at := fs.String("at", "", "print the recorded frame (of --from) taken last at or before at or before `TIME` (2026-12-01T03:00:00Z, \"2026-12-01 03:00\", or 03:00:00 on the recording's first day)")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "\n"+render.DropsHelp)
		}
		return err
	}
	if *at != "" && *from == "" {
		// The directory the documented systemd unit records into.
		if st, err := os.Stat(defaultRecording); err != nil || !st.IsDir() {
			return usageError{fmt.Errorf("backlog ls: --at needs a recording: --from FILE|DIR (there is none at %s)", defaultRecording)}
		}
		*from = defaultRecording
	}
	if *from != "" && *at == "" {
		return usageError{errors.New("backlog ls: --from needs --at TIME")}
	}
	if *from != "" {
		snap, err := recordedAt(&filters, *from, *at, stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return render.JSON(stdout, snap)
		}
		return table(stdout, snap, &filters)
	}
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	// One snapshot and exit: collecting garbage less often costs a few MiB
	// and saves most of the collector's work on two CPUs (10,000
	// listeners: 456 -> 286 ms, 32 -> 37 MiB peak RSS). Unless GOGC says.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	snap, err := collect.Collect(ctx, opts)
	if err != nil {
		return err
	}
	if warning != "" {
		snap.Warnings = append([]string{warning}, snap.Warnings...)
	}
	report(stderr, snap)
	for _, a := range filters.absent() {
		fmt.Fprintf(stderr, "backlog: %s\n", a)
	}
	if *asJSON {
		return render.JSON(stdout, snap)
	}
	return table(stdout, snap, &filters)
}

// table prints the namespaces that hold a listener the filters matched
// when there are filters, else every namespace.
func table(w io.Writer, snap *snapshot.Snapshot, filters *filterFlags) error {
	if filters.filtering() {
		return render.FilteredTable(w, snap)
	}
	return render.Table(w, snap)
}

// defaultRecording is where docs/deployment.md's unit records.
const defaultRecording = "/var/lib/backlog"

// recordedAt is the recorded snapshot ls --from --at prints.
func recordedAt(filters *filterFlags, path, at string, stderr io.Writer) (*snapshot.Snapshot, error) {
	rf := replayFlags{path: path}
	src, err := rf.source(filters, stderr)
	if err != nil {
		return nil, err
	}
	first, err := firstFrameTime(path)
	if err != nil {
		return nil, err
	}
	t, err := parseWhen(at, first)
	if err != nil {
		return nil, usageError{fmt.Errorf("backlog ls: --at: %w", err)}
	}
	f, dmg, err := src.At(t)
	reportDamage(stderr, dmg)
	if err != nil {
		return nil, fmt.Errorf("%w; the recording starts at %s", err, first.Local().Format("2006-01-02 15:04:05"))
	}
	report(stderr, f.Snapshot)
	return f.Snapshot, nil
}

// notes joins the snapshot's warnings and what refused processes hide.
func notes(snap *snapshot.Snapshot) string {
	all := slices.Clone(snap.Warnings)
	if h := collect.DescribeHidden(snap.Hidden, snap.Listeners); h != "" {
		all = append(all, h)
	}
	return strings.Join(all, "; ")
}
