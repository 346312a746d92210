//go:build amd64

package bpfiter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/caps"
)

const btfPath = "/sys/kernel/btf/vmlinux"

// Check says whether this process may load the iterators: kernel BTF and
// CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN). The error wraps
// ErrNotSupported and names what is missing.
func Check() error {
	if _, err := os.Stat(btfPath); err != nil {
		return fmt.Errorf("%w: no kernel BTF (%s)", ErrNotSupported, btfPath)
	}
	eff, err := caps.Effective()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	if !eff.Has(caps.SysAdmin) && !(eff.Has(caps.BPF) && eff.Has(caps.Perfmon)) {
		return fmt.Errorf("%w: needs root, or CAP_BPF and CAP_PERFMON", ErrNotSupported)
	}
	return nil
}

// Reader holds the loaded iterators. Its methods may be called from
// several goroutines; reads of the owners iterator are serialized.
type Reader struct {
	objs iterObjects
	// coll holds the global variables' map when loadLean loaded the
	// programs; lean says it did.
	coll              *ebpf.Collection
	lean              bool
	tcp, task, queues *link.Iter

	mu    sync.Mutex // owners pass: last_pid
	tcpMu sync.Mutex // listeners and queues: stop_after, last_*, tcpBuf
	// tcpBuf is the iter/tcp reads' buffer, kept: a sampler reads ten
	// times a second, and a fresh 256 KiB each time was zeroed, faulted
	// in and collected again each time.
	tcpBuf []byte
}

// Open checks and loads the iterators (50-100 ms of CPU: open once,
// read many times). Errors wrap ErrNotSupported.
func Open() (*Reader, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	r := &Reader{}
	var err error
	if r.coll, err = loadLean(&r.objs); err == nil {
		r.lean = true
	} else {
		// What the lean loader could not do (a BTF it cannot read, a
		// program it does not link), cilium/ebpf does, at its cost.
		r.objs.Close()
		r.objs = iterObjects{}
		if err := loadIterObjects(&r.objs, nil); err != nil {
			return nil, fmt.Errorf("%w: loading the iterators: %w", ErrNotSupported, err)
		}
	}
	if r.tcp, err = link.AttachIter(link.IterOptions{Program: r.objs.Listeners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/tcp (Linux 5.9+): %w", ErrNotSupported, err)
	}
	if r.task, err = link.AttachIter(link.IterOptions{Program: r.objs.Owners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/task_file (Linux 5.8+): %w", ErrNotSupported, err)
	}
	if r.queues, err = link.AttachIter(link.IterOptions{Program: r.objs.Queues}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/tcp (Linux 5.9+): %w", ErrNotSupported, err)
	}
	return r, nil
}

// Close releases the programs and links.
func (r *Reader) Close() error {
	if r.tcp != nil {
		r.tcp.Close()
	}
	if r.task != nil {
		r.task.Close()
	}
	if r.queues != nil {
		r.queues.Close()
	}
	err := r.objs.Close()
	if r.coll != nil {
		r.coll.Close()
	}
	return err
}

// Listeners returns the TCP listeners of the network namespace of the
// calling thread (bpf_iter_new_fd() takes current's namespace): call it on
// a locked OS thread inside the namespace to read. It stops at the first
// socket that is not listening, so established connections cost nothing.
// inUse is how many TCP sockets the namespace has hashed (InUse), 0 when
// unknown: when they are all listeners, the read ends at the last one
// instead of walking the host's established hash after it. Check InUse
// again after the read: if it changed, read again with 0.
func (r *Reader) Listeners(inUse int) ([]Listener, error) {
	var last [listenerSize]byte
	r.tcpMu.Lock() // b is tcpBuf: decode before a sampler reads again
	defer r.tcpMu.Unlock()
	b, found, err := r.readTCPLocked(r.tcp, inUse, r.objs.LastListener, &last)
	if err != nil {
		return nil, err
	}
	if found {
		b = append(b, last[:]...)
	}
	return DecodeListeners(b)
}

// Queues calls fn with the inode and accept-queue length of each TCP
// listener of the calling thread's namespace whose queue is not empty
// (the others' are 0), and returns how many listeners it visited. Like
// Listeners it must run on a locked thread inside the namespace, and
// inUse is the same; it is the cheapest read there is, for samplers.
func (r *Reader) Queues(inUse int, fn func(inode, acceptQueue uint32)) (int, error) {
	var last [queueSize]byte
	r.tcpMu.Lock()
	defer r.tcpMu.Unlock()
	b, found, err := r.readTCPLocked(r.queues, inUse, r.objs.LastQueue, &last)
	if err != nil {
		return 0, err
	}
	if found && binary.NativeEndian.Uint32(last[4:]) != 0 {
		b = append(b, last[:]...)
	}
	if err := DecodeQueues(b, fn); err != nil {
		return 0, err
	}
	var n uint32
	if err := r.objs.QueueListeners.Get(&n); err != nil {
		return 0, fmt.Errorf("bpfiter: reading queue_listeners: %w", err)
	}
	return int(n), nil
}

// readTCPLocked runs one of the iter/tcp programs with stop_after set; found
// says the program ended the read at the last socket and left its record
// in lastVar.
func (r *Reader) readTCPLocked(it *link.Iter, inUse int, lastVar *ebpf.Variable, last any) ([]byte, bool, error) {
	if inUse < 0 || inUse > math.MaxUint32 {
		inUse = 0
	}
	if err := r.objs.StopAfter.Set(uint32(inUse)); err != nil {
		return nil, false, fmt.Errorf("bpfiter: setting stop_after: %w", err)
	}
	if err := r.objs.LastSet.Set(uint32(0)); err != nil {
		return nil, false, fmt.Errorf("bpfiter: resetting last_set: %w", err)
	}
	if err := r.objs.QueueListeners.Set(uint32(0)); err != nil {
		return nil, false, fmt.Errorf("bpfiter: resetting queue_listeners: %w", err)
	}
	b, err := read(it, r.tcpBuf[:0])
	if err != nil {
		return nil, false, fmt.Errorf("reading iter/tcp: %w", err)
	}
	r.tcpBuf = b
	var set uint32
	if err := r.objs.LastSet.Get(&set); err != nil {
		return nil, false, fmt.Errorf("bpfiter: reading last_set: %w", err)
	}
	if set == 0 {
		return b, false, nil
	}
	if err := lastVar.Get(last); err != nil {
		return nil, false, fmt.Errorf("bpfiter: reading the last listener: %w", err)
	}
	return b, true, nil
}

// Owners finds the processes holding listening sockets (TCP and UNIX), in
// every namespace at once, and the processes visited (Owners.Seen). Keep
// the inodes wanted with Owners.Keep.
func (r *Reader) Owners() (Owners, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.objs.LastPid.Set(uint32(0)); err != nil {
		return Owners{}, fmt.Errorf("bpfiter: resetting last_pid: %w", err)
	}
	b, err := read(r.task, nil)
	if err != nil {
		return Owners{}, fmt.Errorf("reading iter/task_file: %w", err)
	}
	return DecodeOwners(b)
}

// read runs an iterator to its end, appending to buf (nil: a new one).
// iter/tcp ends with EAGAIN when its program stops it (a program returning
// 1, bpf_iter_run_prog()): that is the end of the listeners, not an error.
func read(it *link.Iter, buf []byte) ([]byte, error) {
	rc, err := it.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// Read straight into the buffer: a read returns at most what the
	// kernel's seq buffer holds (bpf_seq_read(), 8 pages), so grow ahead.
	if buf == nil {
		buf = make([]byte, 0, 256<<10)
	}
	for {
		if cap(buf)-len(buf) < 64<<10 {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := rc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case errors.Is(err, unix.EAGAIN), err == io.EOF, err == nil && n == 0:
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}
