//go:build amd64

package bpfiter

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

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
	objs      iterObjects
	tcp, task *link.Iter

	mu sync.Mutex // owners pass: last_pid
}

// Open checks and loads the iterators (50-100 ms of CPU: open once,
// read many times). Errors wrap ErrNotSupported.
func Open() (*Reader, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	r := &Reader{}
	if err := loadIterObjects(&r.objs, nil); err != nil {
		return nil, fmt.Errorf("%w: loading the iterators: %w", ErrNotSupported, err)
	}
	var err error
	if r.tcp, err = link.AttachIter(link.IterOptions{Program: r.objs.Listeners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/tcp (Linux 5.9+): %w", ErrNotSupported, err)
	}
	if r.task, err = link.AttachIter(link.IterOptions{Program: r.objs.Owners}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: iter/task_file (Linux 5.8+): %w", ErrNotSupported, err)
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
	return r.objs.Close()
}

// Listeners returns the TCP listeners of the network namespace of the
// calling thread (bpf_iter_new_fd() takes current's namespace): call it on
// a locked OS thread inside the namespace to read. It stops at the first
// socket that is not listening, so established connections cost nothing.
func (r *Reader) Listeners() ([]Listener, error) {
	b, err := read(r.tcp)
	if err != nil {
		return nil, fmt.Errorf("reading iter/tcp: %w", err)
	}
	return DecodeListeners(b)
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
	b, err := read(r.task)
	if err != nil {
		return Owners{}, fmt.Errorf("reading iter/task_file: %w", err)
	}
	return DecodeOwners(b)
}

// read runs an iterator to its end. iter/tcp ends with EAGAIN when its
// program stops it (a program returning 1, bpf_iter_run_prog()): that is
// the end of the listeners, not an error.
func read(it *link.Iter) ([]byte, error) {
	rc, err := it.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// Read straight into the buffer: a read returns at most what the
	// kernel's seq buffer holds (bpf_seq_read(), 8 pages), so grow ahead.
	buf := make([]byte, 0, 256<<10)
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
