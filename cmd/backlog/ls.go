package main

import (
	"context"
	"fmt"
	"io"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/render"
)

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", stdout)
	asJSON := fs.Bool("json", false, "print one JSON object (docs/json.md)")
	var filters filterFlags
	filters.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	var opts collect.Options
	filters.apply(&opts)
	snap, err := collect.Collect(ctx, opts)
	if err != nil {
		return err
	}
	for _, w := range snap.Warnings {
		fmt.Fprintf(stderr, "backlog: %s\n", w)
	}
	for _, ns := range snap.Namespaces {
		if ns.Error != "" {
			fmt.Fprintf(stderr, "backlog: namespace %s: %s\n", ns.Name, ns.Error)
		}
	}
	if *asJSON {
		return render.JSON(stdout, snap)
	}
	return render.Table(stdout, snap)
}
