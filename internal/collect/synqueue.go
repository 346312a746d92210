package collect

import (
	"net/netip"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// synIndex attributes request sockets (SYN-RECV) to listeners of one
// namespace. A request socket carries the concrete local address the SYN was
// sent to, never the listener's wildcard, and no reference to its listener
// (inet_diag_req_v2 dumps of SYN_RECV show inode 0 and no cookie of the
// listener), so it is matched by port and by address or wildcard, in the
// order the kernel's lookup prefers (compute_score() in
// net/ipv4/inet_hashtables.c): exact address, then same-family wildcard,
// then a dual-stack IPv6 wildcard. SO_REUSEPORT siblings cannot be told
// apart: a member's own SYN queue is unknown (nil), and each member
// carries the group's total in GroupSynQueue.
type synIndex struct {
	byPort map[uint16][]int
	ls     []snapshot.Listener
	counts []uint32 // per listener, applied by apply()
	tfo    []uint32 // Fast Open children per listener
}

func newSynIndex(ls []snapshot.Listener) *synIndex {
	idx := &synIndex{byPort: make(map[uint16][]int), ls: ls, counts: make([]uint32, len(ls)), tfo: make([]uint32, len(ls))}
	for i := range ls {
		idx.byPort[ls[i].Port] = append(idx.byPort[ls[i].Port], i)
	}
	return idx
}

// add counts one request socket with local address addr, or with full
// set one TCP Fast Open child still in SYN-RECV: a full socket the
// listener made at SYN time (tcp_fastopen_create_child()), counted in its
// fast-open queue and already in its accept queue, never in its SYN queue.
// It reports whether a listener took it.
func (x *synIndex) add(local netip.AddrPort, full bool) bool {
	best, bestScore := -1, 0
	for _, i := range x.byPort[local.Port()] {
		if s := matchScore(&x.ls[i], local.Addr()); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return false
	}
	if full {
		x.tfo[best]++
	} else {
		x.counts[best]++
	}
	return true
}

// reset forgets what was added, for a dump that restarts.
func (x *synIndex) reset() { clear(x.counts); clear(x.tfo) }

// apply sets the listeners' SynQueue and FastOpenQueue from the counted
// requests; members of a SO_REUSEPORT group (TCP listeners on the same
// address and port) get the group's total in GroupSynQueue instead, as a
// request names no listener.
func (x *synIndex) apply() {
	type group struct {
		addr netip.Addr
		port uint16
	}
	members := make(map[group]int, len(x.ls))
	totals := make(map[group]uint32, len(x.ls))
	for i := range x.ls {
		g := group{x.ls[i].Address, x.ls[i].Port}
		members[g]++
		totals[g] += x.counts[i]
	}
	for i, n := range x.counts {
		l := &x.ls[i]
		l.FastOpenQueue += x.tfo[i]
		g := group{l.Address, l.Port}
		if members[g] > 1 {
			t := totals[g]
			l.SynQueue, l.GroupSynQueue = nil, &t
			continue
		}
		n += l.SynQueueLen()
		l.SynQueue = &n
	}
	x.reset()
}

// matchScore ranks how well listener l covers a request to addr; 0 means
// it does not.
func matchScore(l *snapshot.Listener, addr netip.Addr) int {
	la := l.Address
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	switch {
	case la == addr:
		return 4
	case la.Is4In6() && la.Unmap() == addr:
		return 3
	case la.IsUnspecified() && la.Is4() == addr.Is4():
		return 2
	case la.IsUnspecified() && la.Is6() && addr.Is4() && (l.V6Only == nil || !*l.V6Only):
		return 1
	}
	return 0
}
