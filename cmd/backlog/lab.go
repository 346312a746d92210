package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/render"
)

var labUsage = `Usage: backlog lab SCENARIO [FLAGS]

Reproduces a behaviour of the listen path in private network namespaces
(needs root), shows what moved, and checks it against the kernel's rules.

Scenarios:
  nobind    listen(2) without bind(2): an ephemeral port from ip_local_port_range
  capped    listen(N) above somaxconn is capped; raising somaxconn needs a new listen()
  overflow  a slow acceptor and a burst of clients: accept queue at backlog+1, drops
  synflood  half-open clients over a veth pair: SYN queue, drops or SYN cookies
  abort     tcp_abort_on_overflow=1: clients get a RST instead of a silent drop
  unix-overflow
            a UNIX listener that never accepts: backlog+1 get in, non-blocking
            connects then fail with EAGAIN, blocking ones wait; somaxconn caps it
`

func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, labUsage)
			return nil
		}
		fmt.Fprint(stderr, labUsage)
		return usageError{errors.New("backlog lab: which scenario? (see the list above)")}
	}
	name := args[0]
	if !scenario.Known(name) {
		return usageError{fmt.Errorf("backlog lab: unknown scenario %q (want one of %s)", name, strings.Join(scenario.Names, ", "))}
	}
	fs := newFlagSet("lab "+name, stdout)
	var p scenario.Params
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	fs.IntVar(&p.Backlog, "backlog", 0, "listen(2) `backlog` (default: the scenario's)")
	fs.IntVar(&p.Clients, "clients", 0, fmt.Sprintf("number of clients, at most %d (default: the scenario's)", scenario.MaxClients))
	fs.Float64Var(&p.AcceptRate, "accept-rate", 0, "overflow: accepts per second by the server (0: never)")
	fs.DurationVar(&p.Duration, "duration", 0, fmt.Sprintf("how long to drive it, at most %v (default: a few seconds)", scenario.MaxDuration))
	fs.IntVar(&p.Syncookies, "syncookies", 0, "synflood: net.ipv4.tcp_syncookies inside the lab (0, 1 or 2)")
	fs.IntVar(&p.MaxSynBacklog, "max-syn-backlog", 0, "synflood: net.ipv4.tcp_max_syn_backlog inside the lab (0: leave)")
	fs.IntVar(&p.Somaxconn, "somaxconn", 0, "capped: the somaxconn to raise to (default 16384); unix-overflow: the lab's somaxconn (default 64)")
	abort := fs.Int("abort-on-overflow", 1, "abort: net.ipv4.tcp_abort_on_overflow inside the lab (0 or 1)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range slices.Sorted(maps.Keys(set)) {
		if f != "json" && !slices.Contains(scenario.Uses(name), f) {
			return usageError{fmt.Errorf("backlog lab %s: --%s does not apply to this scenario (it takes --%s)",
				name, f, strings.Join(scenario.Uses(name), ", --"))}
		}
	}
	if set["clients"] && p.Clients < 1 {
		return usageError{fmt.Errorf("backlog lab %s: --clients must be at least 1", name)}
	}
	if set["backlog"] {
		p.SetBacklog(p.Backlog) // 0 too: listen(fd, 0) is a real case
	}
	if set["abort-on-overflow"] {
		p.SetAbort(*abort)
	}
	if err := p.Validate(); err != nil {
		return usageError{fmt.Errorf("backlog lab %s: %w", name, err)}
	}

	res, err := scenario.Execute(ctx, name, p)
	if errors.Is(err, context.Canceled) {
		return errors.New("lab interrupted; its namespaces were removed")
	}
	if errors.Is(err, scenario.ErrNeedRoot) {
		return err
	}
	if err != nil {
		return fmt.Errorf("lab %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = render.Lab(stdout, res)
	}
	if err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("lab %s: the kernel did not do what its rules predict (see FAIL above)", name)
	}
	return nil
}
