package main

import (
	"context"
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

// unixFinder names the listener of a refused UNIX connect from a snapshot
// of the traced namespaces. It takes a new one when the name is not in it
// (at most once a second), or when the snapshot, taken before the refusal,
// shows the listener's queue not full: the queue it shows is then read
// after the refusal. In a storm of refusals the queue stays full, so one
// new snapshot serves them all.
type unixFinder struct {
	opts  collect.Options
	snap  *snapshot.Snapshot
	taken time.Time
	mu    sync.Mutex
	count map[unixKey]*unixSummary
	order []unixKey
}

type unixKey struct {
	netns uint64 // the listener's, 0 when not found
	path  string
}

// unixSummary counts the refused connects of one listener.
type unixSummary struct {
	Netns     uint64             `json:"netns,omitempty"`
	Namespace string             `json:"namespace,omitempty"`
	Path      string             `json:"path"`
	Refused   uint64             `json:"refused"`
	Processes []snapshot.Process `json:"processes"`
}

func newUnixFinder(opts collect.Options) *unixFinder {
	opts.Ports, opts.PIDs, opts.Processes = nil, nil, nil // filters apply to what is printed
	opts.Owners = &collect.OwnerCache{MaxAge: time.Minute}
	return &unixFinder{opts: opts, count: map[unixKey]*unixSummary{}}
}

// fill adds the listener's namespace, inode, queue and owners to u.
func (f *unixFinder) fill(ctx context.Context, u *trace.UnixRefusal) {
	l, ns := f.lookup(u)
	age := time.Since(f.taken)
	if l == nil && age > time.Second || l != nil && !l.Full() && f.taken.Before(u.Time) {
		start := time.Now()
		if s, err := collect.Collect(ctx, f.opts); err == nil {
			f.snap, f.taken = s, start
			l, ns = f.lookup(u)
		}
	}
	if l == nil {
		return
	}
	q, b := l.AcceptQueue, l.Backlog
	u.ListenerNetns, u.Inode, u.AcceptQueue, u.Backlog, u.Processes = l.Netns, l.Inode, &q, &b, l.Processes
	if u.Namespace == "" && ns != nil && ns.Inode == u.Netns {
		u.Namespace = ns.Name
	}
}

// lookup finds the listener by name: an abstract name in the client's
// namespace, a path in the client's namespace first, then in any.
func (f *unixFinder) lookup(u *trace.UnixRefusal) (*snapshot.Listener, *snapshot.Namespace) {
	if f.snap == nil {
		return nil, nil
	}
	var other *snapshot.Listener
	for i := range f.snap.Listeners {
		l := &f.snap.Listeners[i]
		if !l.IsUnix() || l.Path != u.Path {
			continue
		}
		if l.Netns == u.Netns {
			return l, f.snap.Namespace(l.Netns)
		}
		if !strings.HasPrefix(u.Path, "@") && other == nil {
			other = l
		}
	}
	if other != nil {
		return other, f.snap.Namespace(other.Netns)
	}
	return nil, nil
}

func (f *unixFinder) add(u *trace.UnixRefusal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := unixKey{u.ListenerNetns, u.Path}
	s := f.count[k]
	if s == nil {
		s = &unixSummary{Netns: u.ListenerNetns, Path: u.Path, Processes: u.Processes}
		if f.snap != nil {
			if ns := f.snap.Namespace(u.ListenerNetns); ns != nil {
				s.Namespace = ns.Name
			}
		}
		f.count[k] = s
		f.order = append(f.order, k)
	}
	s.Refused++
}

func (f *unixFinder) summary() []unixSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]unixSummary, 0, len(f.order))
	for _, k := range f.order {
		out = append(out, *f.count[k])
	}
	slices.SortStableFunc(out, func(a, b unixSummary) int { return int(b.Refused) - int(a.Refused) })
	return out
}

// keepUnix applies the listing filters to a refused UNIX connect: --port
// alone leaves UNIX out; --pid and --process match the listener's owners.
func keepUnix(opts collect.Options, keep func([]snapshot.Process) bool) func(*trace.UnixRefusal) bool {
	return func(u *trace.UnixRefusal) bool {
		if len(opts.Ports) > 0 || len(opts.Paths) > 0 {
			if !collect.MatchPath(opts.Paths, u.Path) {
				return false
			}
		}
		return keep(u.Processes)
	}
}

// unixText prints a refused UNIX connect in the columns of textView.
func unixText(u *trace.UnixRefusal) []any {
	q, b := "-", "-"
	if u.AcceptQueue != nil {
		q, b = fmt.Sprint(*u.AcceptQueue), fmt.Sprint(*u.Backlog)
	}
	return []any{u.Time.Format("15:04:05.000"), netnsName(u.Namespace, u.Netns), u.Stage,
		u.Path, fmt.Sprintf("%s(%d)", u.Client.Comm, u.Client.PID), q, "-", b, render.Processes(u.Processes), render.Workload(u.Workload)}
}

func unixTextSummary(w io.Writer, sum []unixSummary) error {
	if len(sum) == 0 {
		fmt.Fprintln(w, "No UNIX connect was refused (EAGAIN).")
		return nil
	}
	fmt.Fprintln(w, "UNIX connects refused with EAGAIN (accept queue full; the kernel counts none of them):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NETNS\tPATH\tPROCESS\tREFUSED")
	for _, s := range sum {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", netnsName(s.Namespace, s.Netns), s.Path, render.Processes(s.Processes), s.Refused)
	}
	return tw.Flush()
}
