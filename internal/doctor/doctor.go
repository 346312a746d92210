// Package doctor turns what was observed over a short window into findings:
// what is wrong, where, the numbers that prove it, why the kernel does it
// and what to change. The rules are pure; observe_linux.go gathers the
// observation with the same collector and sampler as ls, top and serve.
package doctor

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// Severities, most severe first.
const (
	Critical = "critical"
	Warning  = "warning"
	Info     = "info"
)

func rank(sev string) int {
	switch sev {
	case Critical:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Observation is what a window of watching saw.
type Observation struct {
	Duration time.Duration
	// Interrupted says the window was cut short (a signal): Duration is
	// how long it really ran, and no "healthy" verdict is given.
	Interrupted bool
	First       *snapshot.Snapshot // at the start of the window
	Last        *snapshot.Snapshot // at its end
	// Windows counts the refreshes in the window (one a second); for each
	// listener, FullWindows counts those whose sampled peak accept queue
	// exceeded the backlog, and FullAtRefresh those where it was still full
	// at the refresh itself.
	Windows       int
	FullWindows   map[snapshot.ListenerKey]int
	FullAtRefresh map[snapshot.ListenerKey]int
	PeakAccept    map[snapshot.ListenerKey]uint32
	PeakSyn       map[snapshot.ListenerKey]uint32
	// Trace is what eBPF saw during the window (doctor --bpf): drops by
	// stage and accept-queue waits per listener. Nil without it.
	Trace []trace.ListenerStats
	// Cmdlines are the command lines of the last snapshot's owners, by
	// pid (/proc/PID/cmdline): they name interpreted servers and the
	// backlog flags they were given. Nil when not read.
	Cmdlines map[int][]string
	// GoVersions are the Go versions of the last snapshot's owners that
	// are Go programs, by pid: the build info in their executable's
	// .go.buildinfo section (debug/buildinfo on /proc/PID/exe). Nil when
	// not read.
	GoVersions map[int]string
	// UnixRefused counts the UNIX connects refused with EAGAIN that eBPF
	// saw during the window, by the client's namespace and the name it
	// asked for. Nil without doctor --bpf.
	UnixRefused map[UnixName]uint64
	// SynQueueFullAtBacklog: this kernel's SYN queue is full at backlog
	// requests, not backlog+1 (lab.SynQueueFullAtBacklog).
	SynQueueFullAtBacklog bool
}

// UnixName is a name a UNIX client connected to, in its namespace.
type UnixName struct {
	Netns uint64
	Path  string
}

// unixRefused returns the refused connects of UNIX listener l: an abstract
// name's in its namespace, a path's from any namespace. ok is false
// without eBPF.
func (o *Observation) unixRefused(l *snapshot.Listener) (n uint64, ok bool) {
	if o.UnixRefused == nil {
		return 0, false
	}
	abstract := strings.HasPrefix(l.Path, "@")
	for k, c := range o.UnixRefused {
		if k.Path == l.Path && (!abstract || k.Netns == l.Netns) {
			n += c
		}
	}
	return n, true
}

// synQueueFull reports whether a SYN queue of this length is full for a
// listener with this backlog: inet_csk_reqsk_queue_is_full().
func (o *Observation) synQueueFull(syn, backlog uint32) bool {
	if o.SynQueueFullAtBacklog {
		return syn >= backlog
	}
	return syn > backlog
}

// traced returns the trace of listener l, or nil.
func (o *Observation) traced(l *snapshot.Listener) *trace.ListenerStats {
	// Each SO_REUSEPORT member is traced on its own socket; events whose
	// member is unknown (inode 0) are no evidence about any one member.
	id := trace.ListenerID{Netns: l.Netns, Listener: netip.AddrPortFrom(l.Address, l.Port), Inode: uint64(l.Inode)}
	for i := range o.Trace {
		if o.Trace[i].ListenerID == id {
			return &o.Trace[i]
		}
	}
	return nil
}

// Finding is one diagnosis.
type Finding struct {
	Rule      string `json:"rule"` // stable id, see docs/doctor.md
	Severity  string `json:"severity"`
	Namespace string `json:"namespace"`
	// Listener is address:port, or a UNIX listener's path; empty for a
	// namespace-wide finding.
	Listener string `json:"listener,omitempty"`
	// Inode is the listener's socket inode, as in ls --json: it tells
	// apart the members of a SO_REUSEPORT group, which share Listener.
	Inode     uint32             `json:"inode,omitempty"`
	Processes []snapshot.Process `json:"processes,omitempty"`
	// Workload is the pod or container of the listener (or of the
	// namespace, for a namespace-wide finding).
	Workload *snapshot.Workload `json:"workload,omitempty"`
	Summary  string             `json:"summary"`
	Evidence map[string]int64   `json:"evidence"`
	// Context holds namespace-wide counters moved in the window beside a
	// listener's finding: shared by every listener of the namespace, they
	// are no proof about this one.
	Context map[string]int64 `json:"context,omitempty"`
	// Server names the program recognised as the listener's owner, whose
	// own setting the advice names.
	Server string `json:"server,omitempty"`
	// RequestedBacklog is the backlog the owner asked listen() for, when
	// it can be known, and RequestedFrom says how it is known (the
	// command line, the server's default). The effective one is
	// evidence["backlog"].
	RequestedBacklog int64  `json:"requested_backlog,omitempty"`
	RequestedFrom    string `json:"requested_from,omitempty"`
	Why              string `json:"why"`
	Advice           string `json:"advice"`
	// Command is the exact change that would help, when there is one.
	Command string `json:"command,omitempty"`
}

// Trouble reports whether any finding is a warning or worse (exit code 3).
func Trouble(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return rank(f.Severity) <= rank(Warning) })
}

// Diagnose applies every rule to the observation and returns the findings,
// most severe first. With nothing wrong it returns one "healthy" finding
// that says what was checked, unless the window was interrupted: a window
// cut short is no evidence of health.
func Diagnose(o Observation) []Finding {
	var fs []Finding
	for _, ns := range o.Last.Namespaces {
		prev := o.First.Namespace(ns.Inode)
		if prev == nil || ns.Error != "" && !collect.PartlyRead(ns) {
			continue // appeared mid-window or unreadable: nothing to compare
		}
		moved := ns.Counters.Delta(prev.Counters)
		d := diag{o: o, ns: ns, moved: moved}
		for i := range o.Last.Listeners {
			l := &o.Last.Listeners[i]
			if l.Netns == ns.Inode {
				fs = append(fs, d.listener(l)...)
			}
		}
		fs = append(fs, d.reuseportGroups()...)
		fs = append(fs, d.closedWithQueue()...)
		fs = append(fs, d.namespace()...)
	}
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(rank(a.Severity), rank(b.Severity)), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Listener, b.Listener))
	})
	if !Trouble(fs) && !o.Interrupted {
		fs = append(fs, healthy(o))
	}
	if fs == nil {
		fs = []Finding{} // JSON: an empty list, not null
	}
	return fs
}

type diag struct {
	o     Observation
	ns    snapshot.Namespace
	moved map[string]int64
}

func (d diag) finding(rule, sev string, l *snapshot.Listener) Finding {
	f := Finding{Rule: rule, Severity: sev, Namespace: d.ns.Name, Evidence: map[string]int64{}, Workload: d.ns.Workload}
	if l != nil {
		f.Listener = endpoint(l)
		f.Inode = l.Inode
		f.Processes = l.Processes
		f.Workload = l.Workload
	}
	return f
}

// inNetns prefixes a command so it runs in the finding's namespace.
func (d diag) inNetns(cmd string) string {
	if d.ns.Path == "" {
		return cmd
	}
	return "nsenter --net=" + d.ns.Path + " " + cmd
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func val(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

func endpoint(l *snapshot.Listener) string { return l.Local() }

func healthy(o Observation) Finding {
	// The namespace watched when there was one; with several, none: the
	// evidence counts them (never "all": the filters may have narrowed).
	ns := ""
	if len(o.Last.Namespaces) == 1 {
		ns = o.Last.Namespaces[0].Name
	}
	return Finding{
		Rule: "healthy", Severity: Info, Namespace: ns,
		Summary: fmt.Sprintf("no listen-queue trouble in %s and %s over %v",
			plural(len(o.Last.Namespaces), "namespace"), plural(len(o.Last.Listeners), "listener"), o.Duration.Round(time.Millisecond)),
		Evidence: map[string]int64{"namespaces": int64(len(o.Last.Namespaces)), "listeners": int64(len(o.Last.Listeners)), "windows": int64(o.Windows)},
		Why: "Checked: accept queues of TCP and UNIX listeners against backlog+1 (sampled every 100 ms), listener drops, SYN queues, " +
			"ListenOverflows, ListenDrops, TCPReqQFullDrop, SyncookiesSent, and the sysctls that cap them.",
		Advice: "Nothing to do. Run it again while clients report timeouts.",
	}
}
