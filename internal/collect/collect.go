// Package collect fills a snapshot from the kernel: sock_diag for listeners
// and SYN queues, /proc for counters, sysctls and owners, one namespace at a
// time on a thread that has entered it.
package collect

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/procfd"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/workload"
)

// Target is a network namespace to collect.
type Target struct {
	// Path is an nsfs file (/proc/PID/ns/net, /run/netns/NAME). Empty means
	// the caller's own namespace, read without setns (no privilege needed).
	Path  string
	Name  string
	Inode uint64
	// PID is a process inside (the lowest seen), whose pod or container
	// names the namespace's workload; 0 when unknown.
	PID int
}

// ErrBadSpec is a --netns value that names no network namespace.
var ErrBadSpec = errors.New("bad --netns")

// ErrNeedSysAdmin means other namespaces were asked for without the
// privilege to enter them.
var ErrNeedSysAdmin = errors.New("reading other network namespaces needs root or CAP_SYS_ADMIN")

// Resolution is what --netns resolved to.
type Resolution struct {
	Targets []Target
	// All: every namespace was asked for (explicitly or by default), so
	// namespaces that appear later belong too.
	All bool
	// Note says in one line how the default was narrowed: to this
	// namespace, for lack of privilege or because the caller runs in a
	// namespace other than the host's. Empty otherwise.
	Note string
	// Refused are processes whose namespace could not be identified while
	// scanning all; Options.Refused takes them to Collect.
	Refused []netns.Refusal
}

// Options say what to collect and what to keep.
type Options struct {
	ProcRoot string   // procfs mount, "/proc" when empty
	Targets  []Target // namespaces; the caller's own when empty
	// Concurrency bounds how many namespaces are read at once (default 4).
	Concurrency int

	// Filters: a listener is kept when it matches every filter given.
	Ports     []uint16
	Paths     []string // UNIX listener names or path.Match patterns
	PIDs      []int
	Processes []string // exact comm names
	// Pods (NAMESPACE/NAME, NAME or UID) and Containers (name or id) keep
	// the listeners of those workloads (MatchPod, MatchContainer).
	Pods       []string
	Containers []string

	// NoOwners skips the /proc/*/fd walk.
	NoOwners bool
	// NoBPF reads with sock_diag and /proc even where the BPF iterators
	// could load (Source).
	NoBPF bool
	// Owners, when set, remembers owners across collections (OwnerCache).
	Owners *OwnerCache
	// Workloads names pods and containers; repeated collections share one
	// so runtime state is read once per container. Nil: a fresh one with
	// the default runtime roots.
	Workloads *workload.Resolver
	// Refused are the processes whose namespace Resolve could not identify
	// (--netns all): Collect works out what they hide (Snapshot.Hidden).
	Refused []netns.Refusal
}

func (o *Options) procRoot() string {
	if o.ProcRoot == "" {
		return "/proc"
	}
	return o.ProcRoot
}

// partlyRead starts Namespace.Error when only counters or sysctls are
// missing and the listeners are complete.
const partlyRead = "partly read"

// PartlyRead reports whether ns was read with its listeners complete but
// some of its counters or sysctls missing.
func PartlyRead(ns snapshot.Namespace) bool { return strings.HasPrefix(ns.Error, partlyRead+":") }

// ErrNoNamespace means no namespace could be read at all.
var ErrNoNamespace = errors.New("no network namespace could be read")

// Collect takes one snapshot. A namespace that fails is recorded in its
// Namespace.Error and the rest still complete; Collect fails only when no
// namespace could be read or ctx ends.
func Collect(ctx context.Context, opts Options) (*snapshot.Snapshot, error) {
	snap := &snapshot.Snapshot{TakenAt: time.Now().UTC()}
	targets := opts.Targets
	if len(targets) == 0 {
		targets = []Target{{}}
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 4
	}

	// The iterators load (once per process, most of a second on a busy
	// host) while the namespaces' counters and sysctls are read: those
	// are then taken when Collect is called, not a load later.
	loaded := func() *bpfiter.Reader { return nil }
	var early func() (bpfiter.Owners, error)
	if !opts.NoBPF {
		go iterReader()
		loaded = func() *bpfiter.Reader { r, _ := iterReader(); return r }
		if !opts.NoOwners && opts.Owners == nil && opts.procRoot() == "/proc" {
			// Without a cache the owners pass runs anyway: run it while
			// the namespaces are read, on the other CPU.
			early = sync.OnceValues(func() (bpfiter.Owners, error) {
				r, err := iterReader()
				if err != nil {
					return bpfiter.Owners{}, err
				}
				return r.Owners()
			})
			go early()
		}
	}

	type result struct {
		ns           snapshot.Namespace
		ls           []snapshot.Listener
		unixErr, err error
		iterErr      error
	}
	results := make([]result, len(targets))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, t := range targets {
		if ctx.Err() != nil {
			results[i].err = ctx.Err()
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ns, ls, unixErr, iterErr, err := readNamespace(t, opts.procRoot(), loaded)
			results[i] = result{ns, ls, unixErr, err, iterErr}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	iter := loaded() // for the owners; set by now when the namespaces used it
	snap.Source = SourceSockDiag
	if iter != nil {
		snap.Source = SourceBPF
	}

	var (
		failed     []error
		noUnixDiag bool
	)
	seen := make(map[uint32]struct{})
	for i, r := range results {
		ns := r.ns
		if ns.Name == "" {
			ns.Name = targets[i].Name
		}
		if ns.Inode == 0 {
			ns.Inode = targets[i].Inode
		}
		ns.Path = targets[i].Path
		if errors.Is(r.err, netns.ErrGone) {
			// Deleted since it was listed (netns.Do): left out, as
			// the next listing will, and no failure unless every
			// namespace asked for went away.
			failed = append(failed, fmt.Errorf("namespace %s: %w", ns.Name, r.err))
			continue
		}
		if r.err != nil {
			ns.Error = r.err.Error()
			failed = append(failed, fmt.Errorf("namespace %s: %w", ns.Name, r.err))
		}
		if r.iterErr != nil && r.err == nil {
			snap.Source = SourceSockDiag
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("namespace %s read with sock_diag: the BPF iterator failed: %v", ns.Name, r.iterErr))
		}
		switch {
		case errors.Is(r.unixErr, ErrNoUnixDiag):
			noUnixDiag = true // one line for all namespaces
		case r.unixErr != nil:
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("%s of namespace %s: %v", unixUnknown, ns.Name, r.unixErr))
		}
		snap.Namespaces = append(snap.Namespaces, ns)
		for _, l := range r.ls {
			seen[l.Inode] = struct{}{}
		}
		if ls := filterAddresses(r.ls, opts.Ports, opts.Paths); snap.Listeners == nil {
			snap.Listeners = ls // not a copy: 2 MB at 10,000 listeners
		} else {
			snap.Listeners = append(snap.Listeners, ls...)
		}
	}
	if noUnixDiag {
		snap.Warnings = append(snap.Warnings, fmt.Sprintf("%s: %v", unixUnknown, ErrNoUnixDiag))
	}
	if len(failed) == len(targets) {
		return nil, fmt.Errorf("%w: %w", ErrNoNamespace, errors.Join(failed...))
	}

	var refused []procfd.Refusal
	if !opts.NoOwners {
		if opts.procRoot() != "/proc" {
			iter = nil // owners of a fixture /proc: walk it
		}
		refused = addOwners(snap, opts.procRoot(), opts.Owners, iter, early)
	}
	res := opts.Workloads
	if res == nil {
		res = &workload.Resolver{ProcRoot: opts.procRoot()}
	}
	addWorkloads(snap, targets, res)
	snap.Listeners = filterOwners(snap.Listeners, opts.PIDs, opts.Processes)
	snap.Listeners = filterWorkloads(snap.Listeners, opts.Pods, opts.Containers)
	snap.Hidden = hidden(&opts, refused, seen, snap.Listeners)
	snapshot.SortFullest(snap.Listeners)
	return snap, nil
}

// filterAddresses keeps the TCP listeners on one of ports and the UNIX
// listeners whose name matches one of paths (path.Match patterns). With
// neither given it keeps everything; with only ports, only TCP listeners,
// and with only paths, only UNIX ones.
func filterAddresses(ls []snapshot.Listener, ports []uint16, paths []string) []snapshot.Listener {
	if len(ports) == 0 && len(paths) == 0 {
		return ls
	}
	return slices.DeleteFunc(ls, func(l snapshot.Listener) bool {
		if l.IsUnix() {
			return !MatchPath(paths, l.Path)
		}
		return !slices.Contains(ports, l.Port)
	})
}

// MatchPath reports whether a UNIX listener's name matches one of the
// patterns: an exact name, or a path.Match pattern ("/run/php/*.sock",
// "@*" for every abstract name).
func MatchPath(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok || p == name {
			return true
		}
	}
	return false
}

// ValidatePaths checks --path patterns, so a bad one is a usage error
// rather than a filter that silently matches nothing.
func ValidatePaths(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("bad --path pattern %q: %w", p, err)
		}
	}
	return nil
}

// unixUnknown starts the warning when UNIX listeners could not be listed.
const unixUnknown = "UNIX listeners unknown"

// UnixUnknown reports whether a snapshot warning says UNIX listeners could
// not be listed (as opposed to owners that could not be read).
func UnixUnknown(warning string) bool { return strings.HasPrefix(warning, unixUnknown) }

// ErrNoUnixDiag means the kernel cannot list UNIX sockets: it was built
// without CONFIG_UNIX_DIAG or cannot load the unix_diag module.
var ErrNoUnixDiag = errors.New("this kernel has no unix_diag (CONFIG_UNIX_DIAG); load the module with `modprobe unix_diag` to see UNIX listeners")

// OwnerCache lets repeated collections (serve, top) skip the /proc/*/fd
// walk, which reads every descriptor of every process and dominates a
// collection on a busy host. A collection walks only when a listener
// appeared since the last walk, or when that walk is older than MaxAge (so
// a process that exits or execs is noticed). Safe for concurrent use.
type OwnerCache struct {
	MaxAge time.Duration

	mu     sync.Mutex
	walked time.Time
	res    procfd.Result // owners of every listener of the last walk
	known  map[uint32]struct{}
}

// lookup returns the cached walk if it covers every inode in want.
func (c *OwnerCache) lookup(want map[uint32]struct{}) (procfd.Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known == nil || time.Since(c.walked) > c.MaxAge {
		return procfd.Result{}, false
	}
	for ino := range want {
		if _, ok := c.known[ino]; !ok {
			return procfd.Result{}, false
		}
	}
	return c.res, true
}

func (c *OwnerCache) store(want map[uint32]struct{}, res procfd.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.walked, c.res, c.known = time.Now(), res, want
}

// addOwners walks /proc/*/fd once for all namespaces' listeners and
// returns the processes whose descriptors were refused.
func addOwners(snap *snapshot.Snapshot, procRoot string, cache *OwnerCache, iter *bpfiter.Reader, early func() (bpfiter.Owners, error)) []procfd.Refusal {
	want := make(map[uint32]struct{}, len(snap.Listeners))
	for _, l := range snap.Listeners {
		want[l.Inode] = struct{}{}
	}
	res, ok := procfd.Result{}, false
	if cache != nil {
		res, ok = cache.lookup(want)
	}
	if !ok && iter != nil {
		var err error
		if res, err = iterOwners(iter, procRoot, want, early); err == nil {
			ok = true
			if cache != nil {
				cache.store(want, res)
			}
		} else {
			snap.Source = SourceSockDiag
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("owners read from /proc: the BPF iterator failed: %v", err))
		}
	}
	if !ok {
		var err error
		res, err = procfd.Walk(procRoot, want)
		if err != nil {
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("owning processes unknown: %v", err))
			return nil
		}
		if cache != nil {
			cache.store(want, res)
		}
	}
	for i := range snap.Listeners {
		l := &snap.Listeners[i]
		l.Processes = res.Owners[l.Inode]
		if l.Processes == nil && res.Denied == 0 {
			l.Processes = []snapshot.Process{} // looked everywhere: no owner
		}
	}
	return res.Refused
}

// filterOwners keeps listeners owned by one of pids and one of comms.
func filterOwners(ls []snapshot.Listener, pids []int, comms []string) []snapshot.Listener {
	if len(pids) == 0 && len(comms) == 0 {
		return ls
	}
	return slices.DeleteFunc(ls, func(l snapshot.Listener) bool {
		pidOK, commOK := len(pids) == 0, len(comms) == 0
		for _, p := range l.Processes {
			pidOK = pidOK || slices.Contains(pids, p.PID)
			commOK = commOK || slices.Contains(comms, p.Comm)
		}
		return !(pidOK && commOK)
	})
}
