//go:build amd64

package bpfiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
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
	// coll holds the global variables' map; lean says loadLean, not
	// cilium/ebpf's own path (loadCilium), loaded the programs.
	coll              *ebpf.Collection
	lean              bool
	tcp, task, queues *link.Iter

	mu    sync.Mutex // owners pass: last_pid
	tcpMu sync.Mutex // listeners and queues: stop_after, last_*, tcpBuf
	// tcpBuf is the iter/tcp reads' buffer, kept: a sampler reads ten
	// times a second.
	tcpBuf []byte
}

// Open checks and loads the iterators (50-100 ms of CPU: open once,
// read many times). Errors wrap ErrNotSupported.
func Open() (*Reader, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	r, err := attach(loadLean)
	if err == nil {
		r.lean = true
		return r, nil
	}
	// What the lean loader could not do (a BTF it cannot read, a program
	// it does not link), cilium/ebpf does, at its cost.
	return attach(loadCilium)
}

// attach loads the programs with load and attaches them.
func attach(load func(*iterObjects) (*ebpf.Collection, error)) (*Reader, error) {
	r := &Reader{}
	var err error
	if r.coll, err = load(&r.objs); err != nil {
		r.objs.Close()
		return nil, fmt.Errorf("%w: loading the iterators: %w", ErrNotSupported, err)
	}
	if r.tcp, err = link.AttachIter(link.IterOptions{Program: r.objs.Listeners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/tcp (Linux 5.9+): %w", ErrNotSupported, err)
	}
	owners := r.objs.Owners
	if owners == nil {
		owners = r.objs.OwnersCompat
	}
	if r.task, err = link.AttachIter(link.IterOptions{Program: owners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/task_file (Linux 5.8+): %w", ErrNotSupported, err)
	}
	if r.queues, err = link.AttachIter(link.IterOptions{Program: r.objs.Queues}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/tcp (Linux 5.9+): %w", ErrNotSupported, err)
	}
	return r, nil
}

// loadCilium loads the iterators with cilium/ebpf alone: owners, or where
// the kernel lacks bpf_sock_from_file() (before 5.11), owners_compat.
// Like loadLean it returns the collection holding the variables' map.
func loadCilium(objs *iterObjects) (*ebpf.Collection, error) {
	var errs error
	for _, owners := range []string{iterProgOwners, iterProgOwnersCompat} {
		spec, err := loadIter()
		if err != nil {
			return nil, err
		}
		for name := range spec.Programs {
			if name != iterProgListeners && name != iterProgQueues && name != owners {
				delete(spec.Programs, name)
			}
		}
		coll, err := ebpf.NewCollection(spec)
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		if err := coll.Assign(&objs.iterVariables); err != nil {
			coll.Close()
			return nil, err
		}
		objs.Listeners, objs.Queues = coll.Programs[iterProgListeners], coll.Programs[iterProgQueues]
		if owners == iterProgOwners {
			objs.Owners = coll.Programs[owners]
		} else {
			objs.OwnersCompat = coll.Programs[owners]
		}
		return coll, nil
	}
	return nil, errs
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
	r.tcpMu.Lock()
	defer r.tcpMu.Unlock()
	// The records, then the listeners in one slice of the right size:
	// growing the slice as records came touched five times its size.
	var chunks [][]byte
	n := 0
	found, err := r.readTCPLocked(r.tcp, inUse, listenerSize, r.objs.LastListener, &last, func(b []byte) error {
		chunks, n = append(chunks, bytes.Clone(b)), n+len(b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found {
		chunks, n = append(chunks, last[:]), n+len(last)
	}
	ls := make([]Listener, 0, n/listenerSize)
	for _, c := range chunks {
		if ls, err = appendListeners(ls, c); err != nil {
			return nil, err
		}
	}
	return ls, nil
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
	found, err := r.readTCPLocked(r.queues, inUse, queueSize, r.objs.LastQueue, &last, func(b []byte) error {
		return DecodeQueues(b, fn)
	})
	if err != nil {
		return 0, err
	}
	if found && binary.NativeEndian.Uint32(last[4:]) != 0 {
		if err := DecodeQueues(last[:], fn); err != nil {
			return 0, err
		}
	}
	var n uint32
	if err := r.objs.QueueListeners.Get(&n); err != nil {
		return 0, fmt.Errorf("bpfiter: reading queue_listeners: %w", err)
	}
	return int(n), nil
}

// readTCPLocked runs one of the iter/tcp programs with stop_after set,
// handing its records of size rec to fn; found says the program ended the
// read at the last socket and left its record in lastVar.
func (r *Reader) readTCPLocked(it *link.Iter, inUse, rec int, lastVar *ebpf.Variable, last any, fn func([]byte) error) (bool, error) {
	if inUse < 0 || inUse > math.MaxUint32 {
		inUse = 0
	}
	if err := r.objs.StopAfter.Set(uint32(inUse)); err != nil {
		return false, fmt.Errorf("bpfiter: setting stop_after: %w", err)
	}
	if err := r.objs.LastSet.Set(uint32(0)); err != nil {
		return false, fmt.Errorf("bpfiter: resetting last_set: %w", err)
	}
	if err := r.objs.QueueListeners.Set(uint32(0)); err != nil {
		return false, fmt.Errorf("bpfiter: resetting queue_listeners: %w", err)
	}
	if r.tcpBuf == nil {
		r.tcpBuf = make([]byte, readSize)
	}
	if err := readRecords(it, r.tcpBuf, rec, fn); err != nil {
		return false, fmt.Errorf("reading iter/tcp: %w", err)
	}
	var set uint32
	if err := r.objs.LastSet.Get(&set); err != nil {
		return false, fmt.Errorf("bpfiter: reading last_set: %w", err)
	}
	if set == 0 {
		return false, nil
	}
	if err := lastVar.Get(last); err != nil {
		return false, fmt.Errorf("bpfiter: reading the last listener: %w", err)
	}
	return true, nil
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
	var d ownersDecoder
	if err := readRecords(r.task, make([]byte, readSize), ownerSize, d.add); err != nil {
		return Owners{}, fmt.Errorf("reading iter/task_file: %w", err)
	}
	return d.finish(), nil
}

// readSize is the buffer an iterator is read through: a read returns at
// most what the kernel's seq buffer holds (bpf_seq_read(), 8 pages), and
// records are decoded as they come, so neither a buffer the size of all
// records nor its growing (fresh pages, each a page fault) is needed.
const readSize = 64 << 10

// readRecords runs an iterator to its end, handing fn whole records of
// size rec as they are read through buf. iter/tcp ends with EAGAIN when
// its program stops it (a program returning 1, bpf_iter_run_prog()): that
// is the end of the listeners, not an error.
func readRecords(it *link.Iter, buf []byte, rec int, fn func([]byte) error) error {
	rc, err := it.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return records(rc, buf, rec, fn)
}

// records is readRecords' loop, for any reader.
func records(rc io.Reader, buf []byte, rec int, fn func([]byte) error) error {
	held := 0 // bytes of a record cut by the last read
	for {
		n, err := rc.Read(buf[held:])
		held += n
		if whole := held - held%rec; whole > 0 {
			if err := fn(buf[:whole]); err != nil {
				return err
			}
			held = copy(buf, buf[whole:held])
		}
		switch {
		case errors.Is(err, unix.EAGAIN), err == io.EOF, err == nil && n == 0:
			if held != 0 {
				return fmt.Errorf("%w: the read ended inside a record (%d bytes)", ErrShort, held)
			}
			return nil
		case err != nil:
			return err
		}
	}
}
