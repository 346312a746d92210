package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	reportpkg "github.com/backlog-dev/backlog/internal/report"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stdout)
	output := fs.String("o", "", "write the report to this `file` (default: stdout)")
	openmetrics := fs.Bool("openmetrics", false, "write OpenMetrics text for `promtool tsdb create-blocks-from openmetrics` instead of HTML (docs/record.md)")
	var filters filterFlags
	filters.register(fs)
	var rf replayFlags
	rf.register(fs, "", "")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") { // -h too
		rf.path, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if rf.path == "" {
		return usageError{errors.New("backlog report: which recording? backlog report FILE|DIR [-o report.html] (see 'backlog report -h')")}
	}
	src, err := rf.source(&filters, stderr)
	if err != nil {
		return err
	}
	w := stdout
	var f *os.File
	if *output != "" {
		// A report holds no secret and is written as the user asked, but
		// never through a symlink another user planted in a shared /tmp.
		if f, err = createNoFollow(*output); err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	if *openmetrics {
		dir := os.TempDir()
		if *output != "" {
			dir = filepath.Dir(*output)
		}
		dmg, err := reportpkg.WriteOpenMetrics(bw, src, dir)
		reportDamage(stderr, dmg)
		if err != nil {
			return err
		}
	} else {
		r, err := reportpkg.Build(src)
		if err != nil {
			return err
		}
		for _, d := range r.Damaged {
			fmt.Fprintf(stderr, "backlog: recording: %s\n", d)
		}
		if err := reportpkg.WriteHTML(bw, r); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		if f == nil {
			// stdout's own error already says "writing the output"; a
			// report small enough to meet it only here must say it once too.
			return err
		}
		return fmt.Errorf("writing the report: %w", err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
		fmt.Fprintf(stderr, "backlog: wrote %s\n", *output)
	}
	return ctx.Err()
}
