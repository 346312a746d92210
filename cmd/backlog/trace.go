package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/render"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// traceOptions turns the listing filters into the tracer's (after
// filters.options): chosen namespaces are filtered in the kernel; "all"
// also sees namespaces created while tracing.
func traceOptions(filters *filterFlags, opts collect.Options) trace.Options {
	topts := trace.Options{
		OnlyNamespaces: !filters.everyNS,
		Ports:          opts.Ports,
	}
	for _, t := range opts.Targets {
		topts.Namespaces = append(topts.Namespaces, trace.Namespace{Path: t.Path, Name: t.Name, Inode: t.Inode})
	}
	return topts
}

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace", stdout)
	asJSON := fs.Bool("json", false, "print one JSON object a line: each event, then the summary (docs/trace.md)")
	duration := fs.Duration("duration", 0, "stop after this long and print the summary (default: until interrupted)")
	programs := fs.String("programs", "", "eBPF program type: tp_btf or raw_tp (default: tp_btf, falling back to raw_tp)")
	noWait := fs.Bool("no-accept-wait", false, "leave out accept-queue waits, and with them the hook on every system call's exit (unless UNIX refusals need it)")
	noUnix := fs.Bool("no-unix", false, "leave out UNIX connects refused with EAGAIN, and with them the hook on every system call's entry")
	var filters filterFlags
	filters.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *duration < 0 {
		return usageError{fmt.Errorf("backlog trace: --duration cannot be negative")}
	}
	progs := trace.Programs(*programs)
	if !slices.Contains([]trace.Programs{trace.ProgramsAuto, trace.ProgramsTpBtf, trace.ProgramsRawTp}, progs) {
		return usageError{fmt.Errorf("backlog trace: --programs %q: want tp_btf or raw_tp", *programs)}
	}
	// Say what is missing before resolving namespaces or loading anything.
	if err := trace.Check(); err != nil {
		return err
	}
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	if warning != "" {
		fmt.Fprintf(stderr, "backlog: %s\n", warning)
	}
	topts := traceOptions(&filters, opts)
	topts.Programs, topts.NoAcceptWait, topts.NoUnix = progs, *noWait, *noUnix
	tr, err := trace.New(topts)
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, w := range tr.Warnings() {
		fmt.Fprintf(stderr, "backlog: %s\n", w)
	}
	// Said in --json mode too (on stderr, beside the JSON stream): a
	// script knows from it that drops from now on are seen.
	limit := ""
	if l := tr.AcceptLimit(); l != "" {
		limit = "; " + l
	}
	fmt.Fprintf(stderr, "backlog: tracing listen-queue drops (%s programs%s); Ctrl-C to stop and print the summary\n", tr.Programs(), limit)

	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	keep := ownerFilter(opts.PIDs, opts.Processes)
	res := filters.workloads()
	keepWorkload := func(w *snapshot.Workload) bool {
		return (len(opts.Pods) == 0 || slices.ContainsFunc(opts.Pods, func(s string) bool { return collect.MatchPod(w, s) })) &&
			(len(opts.Containers) == 0 || slices.ContainsFunc(opts.Containers, func(s string) bool { return collect.MatchContainer(w, s) }))
	}
	var (
		mu    sync.Mutex // the two readers share stdout
		view  func(trace.Event)
		uview func(*trace.UnixRefusal)
	)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		view = func(e trace.Event) { enc.Encode(e) }
		uview = func(u *trace.UnixRefusal) { enc.Encode(u) }
	} else {
		view, uview = textView(stdout)
	}
	start := time.Now()
	finder := newUnixFinder(opts)
	keepU := keepUnix(opts, keep)
	uerr := make(chan error, 1)
	go func() {
		if *noUnix {
			uerr <- nil
			return
		}
		uerr <- tr.RunUnix(ctx, func(u trace.UnixRefusal) {
			finder.fill(ctx, &u)
			u.Workload = collect.WorkloadOf(res, u.Processes)
			if keepU(&u) && keepWorkload(u.Workload) {
				finder.add(&u)
				mu.Lock()
				uview(&u)
				mu.Unlock()
			}
		})
	}()
	err = tr.Run(ctx, func(e trace.Event) {
		e.Workload = collect.WorkloadOf(res, e.Processes)
		if keep(e.Processes) && keepWorkload(e.Workload) {
			mu.Lock()
			view(e)
			mu.Unlock()
		}
	})
	if err := errors.Join(err, <-uerr); err != nil {
		return err
	}
	stats, err := tr.Stats()
	if err != nil {
		return err
	}
	for i := range stats {
		stats[i].Workload = collect.WorkloadOf(res, stats[i].Processes)
	}
	stats = slices.DeleteFunc(stats, func(s trace.ListenerStats) bool { return !keep(s.Processes) || !keepWorkload(s.Workload) })
	counters, err := tr.Counters()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(traceSummary{Summary: summaryJSON{
			Duration: time.Since(start), Programs: tr.Programs(), Listeners: stats, Counters: counters,
			Unix: finder.summary(), NoAcceptWait: *noWait,
			AckHook: tr.AckHook(), AcceptHook: tr.AcceptHook(), MemberHook: tr.MemberHook(), UnixHook: tr.UnixHook(),
			MissingStages: tr.Missing(),
		}})
	}
	if err := textSummary(stdout, time.Since(start), stats, counters, *noWait, tr.Missing()); err != nil {
		return err
	}
	if *noUnix {
		return nil
	}
	return unixTextSummary(stdout, finder.summary())
}

// ownerFilter keeps what --pid and --process ask for (all when neither).
func ownerFilter(pids []int, names []string) func([]snapshot.Process) bool {
	return func(ps []snapshot.Process) bool {
		if len(pids) == 0 && len(names) == 0 {
			return true
		}
		for _, p := range ps {
			if (len(pids) == 0 || slices.Contains(pids, p.PID)) && (len(names) == 0 || slices.Contains(names, p.Comm)) {
				return true
			}
		}
		return false
	}
}

// textView prints one line per event under a header printed once: TCP
// drops, and UNIX connects refused (their PEER is the client process).
func textView(w io.Writer) (func(trace.Event), func(*trace.UnixRefusal)) {
	const format = "%-12s  %-16s  %-11s  %-22s  %-22s  %7s  %5s  %7s  %s  %s\n"
	header := false
	line := func(cols ...any) {
		if !header {
			fmt.Fprintf(w, format, "TIME", "NETNS", "STAGE", "LISTENER", "PEER", "ACCEPTQ", "SYNQ", "BACKLOG", "PROCESS", "WORKLOAD")
			header = true
		}
		fmt.Fprintf(w, format, cols...)
	}
	return func(e trace.Event) {
			var peer any = e.Peer
			switch {
			case e.Stage == trace.StageClose && e.Migrated:
				peer = "moved to a member"
			case e.Stage == trace.StageClose:
				peer = fmt.Sprintf("%d reset", e.Resets)
			}
			line(e.Time.Format("15:04:05.000"), netnsName(e.Namespace, e.Netns), e.Stage,
				e.Listener, peer, fmt.Sprint(e.AcceptQueue), fmt.Sprint(e.SynQueue), fmt.Sprint(e.Backlog),
				render.Processes(e.Processes), render.Workload(e.Workload))
		}, func(u *trace.UnixRefusal) {
			line(unixText(u)...)
		}
}

func netnsName(name string, ino uint64) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("netns:%d", ino)
}

type traceSummary struct {
	Summary summaryJSON `json:"summary"`
}

type summaryJSON struct {
	Duration  time.Duration         `json:"duration_ns"`
	Programs  trace.Programs        `json:"programs"`
	Listeners []trace.ListenerStats `json:"listeners"`
	Counters  trace.Counters        `json:"counters"`
	// Unix counts the UNIX connects refused with EAGAIN, by listener.
	Unix []unixSummary `json:"unix_refused,omitempty"`
	// NoAcceptWait: accepts were not measured (--no-accept-wait), so the
	// listeners' accept_wait counts 0 are not counts.
	NoAcceptWait bool `json:"no_accept_wait,omitempty"`
	// AckHook is what caught the ack stage (fexit or kfree_skb).
	AckHook string `json:"ack_hook,omitempty"`
	// AcceptHook is what measured accept waits: fexit (inet_csk_accept,
	// every accept path) or sys_exit (accept(2)/accept4(2), no io_uring).
	AcceptHook string `json:"accept_hook,omitempty"`
	// MemberHook is how a SYN's SO_REUSEPORT member was told: fentry
	// (tcp_conn_request, exact) or drops (the one member whose sk_drops
	// rose, or that meets the drop condition; otherwise counted ambiguous).
	MemberHook string `json:"member_hook,omitempty"`
	// UnixHook is what caught UNIX connects refused by connect(2): fexit
	// (connect(2)'s entry point or body) or sys_exit; absent with --no-unix.
	UnixHook string `json:"unix_hook,omitempty"`
	// MissingStages this kernel cannot trace: their counts are absent,
	// not zero.
	MissingStages []trace.MissingStage `json:"missing_stages,omitempty"`
}

// textSummary prints events by listener and stage, and accept-wait
// quantiles unless noWait (--no-accept-wait: accepts were not measured, so
// no count of them is shown, not even 0).
func textSummary(w io.Writer, d time.Duration, stats []trace.ListenerStats, c trace.Counters, noWait bool, ms []trace.MissingStage) error {
	fmt.Fprintf(w, "\nSummary after %v:\n", d.Round(time.Millisecond))
	switch {
	case len(stats) == 0 && noWait:
		fmt.Fprintln(w, "  no drops (accepts not measured: --no-accept-wait)")
	case len(stats) == 0:
		fmt.Fprintln(w, "  no drops, and no accepted connection on a known listener")
	default:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		head := []string{"  NETNS", "LISTENER", "PROCESS", "WORKLOAD"}
		for _, s := range trace.Stages {
			head = append(head, strings.ToUpper(s.String()))
		}
		head = append(head, "ACCEPTED", "WAIT p50", "p90", "p99", "max")
		fmt.Fprintln(tw, strings.Join(head, "\t"))
		shared := map[trace.ListenerID]int{} // SO_REUSEPORT members share an address
		for _, s := range stats {
			shared[trace.ListenerID{Netns: s.Netns, Listener: s.Listener}]++
		}
		for _, s := range stats {
			listener := s.Listener.String()
			if shared[trace.ListenerID{Netns: s.Netns, Listener: s.Listener}] > 1 {
				if s.Inode != 0 {
					listener += fmt.Sprintf(" inode %d", s.Inode)
				} else {
					listener += " member unknown"
				}
			}
			row := []string{"  " + netnsName(s.Namespace, s.Netns), listener, render.Processes(s.Processes), render.Workload(s.Workload)}
			for _, st := range trace.Stages {
				if missing(ms, st) {
					row = append(row, "n/a")
				} else {
					row = append(row, fmt.Sprint(s.Drops[st]))
				}
			}
			h := &s.AcceptWait
			switch {
			case noWait:
				row = append(row, "-", "-", "-", "-", "-")
			case h.Count == 0:
				row = append(row, "0")
				row = append(row, "-", "-", "-", "-")
			default:
				row = append(row, fmt.Sprint(h.Count), wait(h.Quantile(0.5)), wait(h.Quantile(0.9)), wait(h.Quantile(0.99)), wait(h.Max))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "Stages: syn = accept queue full at the SYN; syn-queue = SYN queue full, no cookies; ack = accept queue full at the final ACK;")
	waits := "Waits: handshake done → accept()."
	if noWait {
		waits = "Accepts and waits: not measured (--no-accept-wait)."
	}
	fmt.Fprintln(w, "cookie = answered with a SYN cookie (not a drop); syn-backlog = last quarter of tcp_max_syn_backlog;")
	fmt.Fprintln(w, "close = clients reset because the listener closed with them queued or half-open (net.ipv4.tcp_migrate_req=1 moves them to another SO_REUSEPORT member). "+waits)
	for _, m := range ms {
		fmt.Fprintf(w, "Stage %s is not traced on this kernel (n/a): %s.\n", m.Stage, m.Reason)
	}
	if c.Lost > 0 {
		fmt.Fprintf(w, "%d events were lost (the ring buffer was full); the counts above are short by that much.\n", c.Lost)
	}
	if c.Ambiguous > 0 {
		fmt.Fprintf(w, "%d events reached an SO_REUSEPORT group where several members met the drop condition and this kernel does not say which: "+
			"counted by stage on the address (no inode), not on a member.\n", c.Ambiguous)
	}
	if c.Unmatched > 0 {
		fmt.Fprintf(w, "%d SYNs got no SYN-ACK at once yet met no drop condition (a SYN-ACK waiting for ARP/ND, or a refusal by a security module); not counted above.\n", c.Unmatched)
	}
	return nil
}

// wait prints a duration with three significant digits.
func wait(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func missing(ms []trace.MissingStage, st trace.Stage) bool {
	return slices.ContainsFunc(ms, func(m trace.MissingStage) bool { return m.Stage == st })
}
