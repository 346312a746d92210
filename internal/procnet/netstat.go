// Package procnet reads the TcpExt listen counters of a network namespace
// from /proc/<pid>/net/netstat, through prometheus/procfs.
package procnet

import (
	"fmt"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/prometheus/procfs"
)

// ReadCounters reads net/netstat of the process or thread pid under root
// (a procfs mount such as "/proc", or "/proc/self/task" to name a thread).
//
// /proc/self/net follows the main thread's namespace, so a caller that has
// entered another namespace on a locked thread reads root
// "/proc/self/task" with its own thread id.
func ReadCounters(root string, pid int) (snapshot.Counters, error) {
	fail := func(err error) (snapshot.Counters, error) {
		return snapshot.Counters{}, fmt.Errorf("procnet: reading TcpExt counters from %s/%d/net/netstat: %w", root, pid, err)
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		return fail(err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return fail(err)
	}
	ns, err := p.Netstat()
	if err != nil {
		return fail(err)
	}
	return FromProcfs(ns.TcpExt), nil
}

// FromProcfs converts procfs's TcpExt; a field procfs did not find stays nil.
func FromProcfs(t procfs.TcpExt) snapshot.Counters {
	return snapshot.Counters{
		ListenOverflows:           u(t.ListenOverflows),
		ListenDrops:               u(t.ListenDrops),
		TCPReqQFullDrop:           u(t.TCPReqQFullDrop),
		TCPReqQFullDoCookies:      u(t.TCPReqQFullDoCookies),
		SyncookiesSent:            u(t.SyncookiesSent),
		SyncookiesRecv:            u(t.SyncookiesRecv),
		SyncookiesFailed:          u(t.SyncookiesFailed),
		TCPFastOpenListenOverflow: u(t.TCPFastOpenListenOverflow),
		TCPDeferAcceptDrop:        u(t.TCPDeferAcceptDrop),
	}
}

// u converts procfs's float64 (exact for counters below 2^53).
func u(f *float64) *uint64 {
	if f == nil {
		return nil
	}
	v := uint64(*f)
	return &v
}
