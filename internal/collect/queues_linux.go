package collect

import (
	"errors"
	"fmt"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// QueueReader reads one namespace's accept queues for a sampler, many times
// a second: the TCP listeners with the iterators' queues program where BPF
// loads (a listener with an empty queue costs no record: ~3 ms of CPU for
// 10,000 idle listeners here, against ~7 ms for a LISTEN-only sock_diag
// dump and its parsing), else with that dump; UNIX listeners with
// unix_diag either way. It keeps the namespace open: a read enters it by
// descriptor, never by path.
type QueueReader struct {
	conn  *sockdiag.Conn
	inode uint64
	nsFD  int // the namespace to enter for the iterator; -1: the caller's own
	name  string
	iter  *bpfiter.Reader
}

// OpenQueueReader opens t for sampling; noBPF keeps it on sock_diag.
func OpenQueueReader(t Target, noBPF bool) (*QueueReader, error) {
	conn, inode, err := Dial(t)
	if err != nil {
		return nil, err
	}
	q := &QueueReader{conn: conn, inode: inode, nsFD: -1, name: t.Name}
	if noBPF {
		return q, nil
	}
	if r, err := iterReader(); err == nil {
		if t.Path != "" {
			fd, err := unix.Open(t.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return q, nil // sock_diag, which is open already
			}
			q.nsFD = fd
		}
		q.iter = r
	}
	return q, nil
}

// Inode is the namespace's inode.
func (q *QueueReader) Inode() uint64 { return q.inode }

// Read calls fn with the socket inode and accept-queue length of listeners
// (TCP and UNIX) and returns how many listeners there are. When complete
// is false (the iterator), fn saw only the TCP listeners whose queue is
// not empty: the others' queue is 0. fn may see a socket twice when a
// dump is restarted.
func (q *QueueReader) Read(fn func(inode, acceptQueue uint32)) (listeners int, complete bool, err error) {
	if q.iter == nil {
		n := 0
		err := DumpAcceptQueues(q.conn, func(inode, aq uint32) { n++; fn(inode, aq) })
		return n, true, err
	}
	read := func() error {
		return withInUse(func(inUse int) error {
			var err error
			listeners, err = q.iter.Queues(inUse, fn)
			return err
		})
	}
	if q.nsFD < 0 {
		err = onLockedThread(read)
	} else {
		err = netns.DoFd(q.nsFD, q.name, read)
	}
	if err != nil {
		return 0, false, fmt.Errorf("listing listeners: %w", err)
	}
	err = dumpUnix(q.conn, sockdiag.UnixShowRQLen, func(s *sockdiag.UnixSocket) {
		if s.RQLen != nil {
			listeners++
			fn(s.Inode, s.RQLen.RQueue)
		}
	})
	if err != nil && !errors.Is(err, ErrNoUnixDiag) {
		return listeners, false, fmt.Errorf("listing UNIX listeners: %w", err)
	}
	return listeners, false, nil
}

// Close closes the namespace and the socket.
func (q *QueueReader) Close() error {
	if q.nsFD >= 0 {
		unix.Close(q.nsFD)
	}
	return q.conn.Close()
}
