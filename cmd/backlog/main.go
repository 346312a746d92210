// Command backlog makes Linux TCP listen queues visible and explains their
// drops. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, the same for every command (docs/errors.md); doctor adds
// exitTrouble.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

var version = "dev"

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"top", "live view: every listener refreshing in place, with peaks, rates and history", runTop},
		{"ls", "one snapshot of every listener: accept queue / backlog, SYN queue, drops, owner", runLs},
		{"serve", "Prometheus exporter of every listener's queues and drops (docs/metrics.md)", runServe},
		{"doctor", "watch a short window, then say what is wrong, with evidence and advice (exit 3 on trouble)", runDoctor},
		{"record", "record every listener's queues, peaks and drops to a file, for replay and reports (docs/record.md)", runRecord},
		{"report", "one offline HTML page with plots of a recording, or OpenMetrics to backfill Prometheus (docs/record.md)", runReport},
		{"trace", "eBPF: every dropped handshake with its peer and stage, and accept-queue waits (docs/trace.md)", runTrace},
		{"lab", "reproduce a listen-path behaviour in private namespaces and show what moved", runLab},
		{"version", "version, kernel and the capabilities this process has", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name := "ls" // `backlog` alone: top on a terminal, ls otherwise
	if isTerminal(stdout) {
		name = "top"
	}
	if len(args) > 0 && !isFlag(args[0]) {
		name, args = args[0], args[1:]
	}
	// A terminal is left as it is: top's live view needs the *os.File.
	if isTerminal(stdout) {
		return dispatch(ctx, name, args, stdout, stderr)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := &output{w: stdout, cancel: cancel}
	code := dispatch(ctx, name, args, out, stderr)
	// Output that was lost is a failure, whatever the command thought.
	if err := out.Err(); err != nil {
		if code != exitFailure { // else the command said it already
			fmt.Fprintf(stderr, "backlog: %v\n", err)
		}
		return exitFailure
	}
	return code
}

func dispatch(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return exitCode(c.run(ctx, args, stdout, stderr), stderr)
		}
	}
	fmt.Fprintf(stderr, "backlog: unknown command %q; run 'backlog help' for the list\n", name)
	return exitUsage
}

func isFlag(s string) bool { return len(s) > 0 && s[0] == '-' && s != "-h" && s != "--help" }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: backlog [COMMAND] [FLAGS]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nWith no command, backlog runs top on a terminal and ls otherwise. 'backlog COMMAND -h' shows a command's flags.")
}

// usageError marks a bad command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errInterrupted marks a command stopped by a signal before its answer was
// complete (exit 1).
var errInterrupted = errors.New("interrupted")

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, err) // names the command already
		return exitUsage
	case errors.Is(err, errInterrupted), errors.Is(err, context.Canceled):
		// Commands whose normal end is a signal (top, trace, serve) return
		// nil; for the others a signal means the answer is missing.
		fmt.Fprintln(stderr, "backlog: interrupted before the answer was complete")
		return exitFailure
	case errors.As(err, new(troubleError)):
		return exitTrouble
	}
	fmt.Fprintf(stderr, "backlog: %v\n", err)
	return exitFailure
}
