// Package bpfiter reads TCP listeners and the processes holding them with
// BPF iterators (iter/tcp, iter/task_file): both queues of every listener,
// each SO_REUSEPORT member's own SYN queue, and owners, without sock_diag
// dumps or a readlink per descriptor.
package bpfiter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Listener is one TCP listener as iter/tcp read it.
type Listener struct {
	// Netns is the inode of its network namespace.
	Netns   uint64
	Address netip.Addr
	Port    uint16
	IPv6    bool // AF_INET6 (dual-stack or v6only), else AF_INET
	V6Only  bool // IPV6_V6ONLY; false for AF_INET
	Inode   uint32
	// AcceptQueue is sk_ack_backlog, Backlog sk_max_ack_backlog, Drops
	// sk_drops: the numbers sock_diag reports as rqueue, wqueue and
	// SK_MEMINFO_DROPS.
	AcceptQueue uint32
	Backlog     uint32
	Drops       uint32
	// SynQueue is icsk_accept_queue.qlen: request sockets waiting for
	// their final ACK, this socket's own even inside a SO_REUSEPORT group.
	// TCP Fast Open requests are not in it.
	SynQueue uint32
	// FastOpenQueue is icsk_accept_queue.fastopenq.qlen: Fast Open
	// children whose handshake is not finished; they are already in the
	// accept queue (tcp_fastopen_create_child()).
	FastOpenQueue uint32
}

// Owners is what one iter/task_file pass found.
type Owners struct {
	// Held has, for each process holding a listening socket, the
	// descriptors holding them (descriptor -> inode) and its epoll
	// instances, whose fdinfo says which sockets the process waits on.
	Held map[int]*Held
	// Seen holds every process the iterator visited that had open files.
	// A process /proc lists with descriptors but missing here was not
	// visited (this kernel's task iterators skip some, pid 1 among them):
	// walk its /proc/PID/fd instead.
	Seen map[int]struct{}
}

// Holds reports whether a process holds the socket with inode ino.
func (o Owners) Holds(ino uint32) bool {
	for _, h := range o.Held {
		for _, i := range h.FDs {
			if i == ino {
				return true
			}
		}
	}
	return false
}

// Held is one process's descriptors that matter.
type Held struct {
	FDs    map[int]uint32
	Epolls []int
}

// ErrNotSupported means this host cannot run the iterators: not Linux on
// amd64, no kernel BTF, no CAP_BPF+CAP_PERFMON, or a kernel without the
// iterator types (iter/tcp is 5.9+, iter/task_file 5.8+).
var ErrNotSupported = errors.New("BPF iterators not supported")

// ErrShort is a record shorter than its layout.
var ErrShort = errors.New("bpfiter: short record")

// Record sizes; the layouts of struct lrec and struct orec in bpf/iter.c.
const (
	listenerSize = 48
	ownerSize    = 32
	queueSize    = 8
)

const (
	afInet  = 2
	afInet6 = 10
)

// DecodeListeners decodes what iter/tcp wrote: whole records only.
func DecodeListeners(b []byte) ([]Listener, error) { return appendListeners(nil, b) }

// appendListeners decodes b's listener records onto ls.
func appendListeners(ls []Listener, b []byte) ([]Listener, error) {
	if len(b)%listenerSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte listener records", ErrShort, len(b), listenerSize)
	}
	for ; len(b) > 0; b = b[listenerSize:] {
		ne := binary.NativeEndian
		l := Listener{
			Netns:         uint64(ne.Uint32(b[0:])),
			Inode:         ne.Uint32(b[4:]),
			AcceptQueue:   ne.Uint32(b[8:]),
			Backlog:       ne.Uint32(b[12:]),
			Drops:         ne.Uint32(b[16:]),
			SynQueue:      ne.Uint32(b[20:]),
			FastOpenQueue: ne.Uint32(b[24:]),
			Port:          ne.Uint16(b[28:]),
		}
		family, v6only := b[30], b[31]
		switch family {
		case afInet:
			l.Address = netip.AddrFrom4([4]byte(b[32:36]))
		case afInet6:
			l.IPv6, l.V6Only = true, v6only != 0
			l.Address = netip.AddrFrom16([16]byte(b[32:48]))
		default:
			return nil, fmt.Errorf("bpfiter: listener record with address family %d", family)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// DecodeQueues decodes what the queues program wrote (inode, accept
// queue), calling fn for each record: whole records only.
func DecodeQueues(b []byte, fn func(inode, acceptQueue uint32)) error {
	if len(b)%queueSize != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %d-byte queue records", ErrShort, len(b), queueSize)
	}
	ne := binary.NativeEndian
	for ; len(b) > 0; b = b[queueSize:] {
		fn(ne.Uint32(b[0:]), ne.Uint32(b[4:]))
	}
	return nil
}

// Kinds of owner records (OWNER_* in bpf/iter.c).
const (
	kindVisited = 0
	kindSocket  = 1
	kindEpoll   = 2
)

// Keep drops the sockets not in want, and the processes left holding
// none of them. It filters o's maps in place (most of them are wanted:
// copying them cost more than the decoding) and returns o.
func (o Owners) Keep(want map[uint32]struct{}) Owners {
	for pid, h := range o.Held {
		for fd, ino := range h.FDs {
			if _, ok := want[ino]; !ok {
				delete(h.FDs, fd)
			}
		}
		if len(h.FDs) == 0 {
			delete(o.Held, pid)
		}
	}
	return o
}

// DecodeOwners decodes what iter/task_file wrote: a record per process
// visited, per descriptor holding a listening socket, and per epoll
// instance.
func DecodeOwners(b []byte) (Owners, error) {
	var d ownersDecoder
	if err := d.add(b); err != nil {
		return Owners{}, err
	}
	return d.finish(), nil
}

// ownersDecoder decodes iter/task_file's records as they are read.
type ownersDecoder struct {
	held    map[int]*Held
	seen    map[int]struct{}
	lastPID int
}

// add decodes whole records.
func (d *ownersDecoder) add(b []byte) error {
	if len(b)%ownerSize != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %d-byte owner records", ErrShort, len(b), ownerSize)
	}
	if d.held == nil {
		d.held, d.seen = make(map[int]*Held), make(map[int]struct{}, 256)
	}
	ne := binary.NativeEndian
	var h *Held // the holder of the last socket: records come process by process
	for ; len(b) > 0; b = b[ownerSize:] {
		pid := int(ne.Uint32(b[0:]))
		inode, fd, kind := ne.Uint32(b[4:]), int(ne.Uint32(b[8:])), ne.Uint32(b[12:])
		// Any record says the process was visited: its own record may
		// have been dropped with a later one when the read's buffer
		// filled (bpf/iter.c).
		if pid != d.lastPID {
			d.seen[pid], d.lastPID, h = struct{}{}, pid, nil
		}
		switch kind {
		case kindVisited:
			continue
		case kindEpoll, kindSocket:
		default:
			return fmt.Errorf("bpfiter: owner record of kind %d", kind)
		}
		if h == nil {
			if h = d.held[pid]; h == nil {
				// Sized for the process's records in this read: a server
				// holding 10,000 sockets grew its map ten times.
				n := 0
				for r := b; len(r) > 0 && int(ne.Uint32(r)) == pid; r = r[ownerSize:] {
					n++
				}
				h = &Held{FDs: make(map[int]uint32, n)}
				d.held[pid] = h
			}
		}
		if kind == kindEpoll {
			if !slices.Contains(h.Epolls, fd) {
				h.Epolls = append(h.Epolls, fd)
			}
			continue
		}
		h.FDs[fd] = inode
	}
	return nil
}

// finish returns what was decoded: processes holding only epoll
// instances hold no socket and are left out.
func (d *ownersDecoder) finish() Owners {
	if d.held == nil {
		d.held, d.seen = make(map[int]*Held), make(map[int]struct{})
	}
	for pid, h := range d.held {
		if len(h.FDs) == 0 {
			delete(d.held, pid)
		}
	}
	return Owners{Held: d.held, Seen: d.seen}
}
