package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/render"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// report tells a person, on stderr, what the snapshot could not see: the
// warnings on one line, then one line per namespace that failed.
func report(stderr io.Writer, snap *snapshot.Snapshot) {
	if len(snap.Warnings) > 0 {
		fmt.Fprintf(stderr, "backlog: %s\n", strings.Join(snap.Warnings, "; "))
	}
	for _, ns := range snap.Namespaces {
		if ns.Error != "" {
			fmt.Fprintf(stderr, "backlog: namespace %s: %s\n", ns.Name, ns.Error)
		}
	}
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", stdout)
	asJSON := fs.Bool("json", false, "print one JSON object (docs/json.md)")
	var filters filterFlags
	filters.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	snap, err := collect.Collect(ctx, opts)
	if err != nil {
		return err
	}
	if warning != "" {
		snap.Warnings = append([]string{warning}, snap.Warnings...)
	}
	report(stderr, snap)
	if *asJSON {
		return render.JSON(stdout, snap)
	}
	return render.Table(stdout, snap)
}
