package trace

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// ListenerID names a listening socket across namespaces: each member of
// an SO_REUSEPORT group is its own listener, told by its socket inode.
// Inode 0 is an address whose member is unknown (Counters.Ambiguous).
type ListenerID struct {
	Netns    uint64         `json:"netns"`
	Listener netip.AddrPort `json:"listener"`
	Inode    uint64         `json:"inode,omitempty"`
}

// ListenerStats is what a trace saw of one listener: drops by stage since
// the trace started, and the accept-queue waits of the connections it
// accepted. It is what `backlog serve --bpf` exports.
type ListenerStats struct {
	ListenerID
	Namespace string             `json:"namespace,omitempty"`
	Processes []snapshot.Process `json:"processes"`
	Workload  *snapshot.Workload `json:"workload,omitempty"`
	// Drops counts events by stage (cookies included, though a cookie is
	// not a drop); for stage close, the connections reset by the listener
	// closing with them queued or half-open.
	Drops      map[Stage]uint64 `json:"drops"`
	AcceptWait Histogram        `json:"accept_wait"`
	// RequestedBacklog is the backlog argument of the listen(2) call that
	// opened the socket, when the trace saw that call (it ran while
	// tracing; fentry on listen's function reads it where trampolines
	// load, else the hook on system call entry, which only runs when UNIX
	// refusals are traced). The kernel keeps only min(it, somaxconn). Negative
	// means "the most allowed".
	RequestedBacklog *int64 `json:"requested_backlog,omitempty"`
}

// Dropped is the number of packets dropped, cookies and resets at close
// excepted.
func (s *ListenerStats) Dropped() uint64 {
	var n uint64
	for st, c := range s.Drops {
		if st != StageCookie && st != StageClose {
			n += c
		}
	}
	return n
}

// tally counts events per listener as they are read. Safe for concurrent
// use.
type tally struct {
	mu sync.Mutex
	m  map[ListenerID]*ListenerStats
}

func (t *tally) add(e *Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[ListenerID]*ListenerStats)
	}
	id := ListenerID{Netns: e.Netns, Listener: e.Listener, Inode: e.Inode}
	s := t.m[id]
	if s == nil {
		s = &ListenerStats{ListenerID: id, Drops: make(map[Stage]uint64)}
		t.m[id] = s
	}
	if e.Stage == StageClose {
		s.Drops[e.Stage] += uint64(e.Resets)
	} else {
		s.Drops[e.Stage]++
	}
	if e.Namespace != "" {
		s.Namespace = e.Namespace
	}
	if e.Processes != nil {
		s.Processes = e.Processes
	}
}

// merge returns the tallied listeners joined with the accept-wait
// histograms, ordered by namespace and listener.
func (t *tally) merge(waits map[ListenerID]*Histogram, name func(uint64) string) []ListenerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	byID := make(map[ListenerID]*ListenerStats, len(t.m)+len(waits))
	for id, s := range t.m {
		c := *s
		c.Drops = make(map[Stage]uint64, len(s.Drops))
		for k, v := range s.Drops {
			c.Drops[k] = v
		}
		byID[id] = &c
	}
	for id, h := range waits {
		s := byID[id]
		if s == nil {
			s = &ListenerStats{ListenerID: id, Drops: map[Stage]uint64{}}
			byID[id] = s
		}
		s.AcceptWait = *h
	}
	out := make([]ListenerStats, 0, len(byID))
	for _, s := range byID {
		if s.Namespace == "" && name != nil {
			s.Namespace = name(s.Netns)
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ListenerStats) int {
		return cmp.Or(cmp.Compare(a.Netns, b.Netns), a.Listener.Compare(b.Listener), cmp.Compare(a.Inode, b.Inode))
	})
	return out
}
