package collect

import (
	"errors"
	"fmt"
	"os"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/procnet"
	"github.com/backlog-dev/backlog/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// QueueReader reads one namespace's accept queues for a sampler, many times
// a second: the TCP listeners with the iterators' queues program where BPF
// loads (a listener with an empty queue costs no record: ~3 ms of CPU for
// 10,000 idle listeners here, against ~7 ms for a LISTEN-only sock_diag
// dump and its parsing), else with that dump; UNIX listeners with
// unix_diag either way. With the iterator, a read is skipped while the
// namespace's counters show that no TCP queue can have grown since one was
// found all empty (quietRead). It keeps the namespace open: a read enters
// it by descriptor, never by path. Not safe for concurrent use.
type QueueReader struct {
	conn  *sockdiag.Conn
	inode uint64
	nsFD  int // the namespace to enter for the iterator; -1: the caller's own
	name  string
	iter  *bpfiter.Reader

	// quiet says every TCP accept queue is empty and stays so while the
	// namespace's counters read fp: the read is skipped (see quietRead).
	quiet     bool
	fp        queueFingerprint
	fpOK      bool
	listeners int    // TCP listeners of the last read
	skipped   uint64 // reads skipped while quiet
}

// Skipped is how many reads of the TCP queues were skipped because none
// could have grown (quietRead).
func (q *QueueReader) Skipped() uint64 { return q.skipped }

// queueFingerprint is what must move for a TCP accept queue to grow: a
// child is added to a listener's queue only after tcp_create_openreq_child()
// counted it in Tcp PassiveOpens (inet_csk_reqsk_queue_add(), also for TCP
// Fast Open and syncookies), or when a closing SO_REUSEPORT listener
// migrates its children to another one (inet_csk_listen_stop(): TcpExt
// TCPMigrateReqSuccess, and the closed listener leaves the hashed TCP
// sockets, "inuse"). A listener that appears changes "inuse" too.
type queueFingerprint struct {
	passiveOpens, migrated uint64
	inUse                  int
}

// readFingerprint reads it in the calling thread's namespace.
func readFingerprint() (queueFingerprint, bool) {
	var fp queueFingerprint
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return fp, false
	}
	var ok bool
	if fp.passiveOpens, ok = procnet.ParseSNMPCounter(b, "Tcp", "PassiveOpens"); !ok {
		return fp, false
	}
	if b, err = os.ReadFile("/proc/thread-self/net/netstat"); err != nil {
		return fp, false
	}
	fp.migrated, _ = procnet.ParseSNMPCounter(b, "TcpExt", "TCPMigrateReqSuccess") // absent before 5.14: no migration
	fp.inUse, ok = tcpInUse()
	return fp, ok
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
		var err error
		listeners, err = q.quietRead(fn)
		return err
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

// quietRead reads the TCP accept queues with the iterator, unless they are
// all known to be empty: a read that found them all empty, taken after the
// fingerprint had stayed the same for a whole interval, makes the reader
// quiet until the fingerprint moves. A read walks every listener of the
// host's listening hash (~5 ms at 10,000 listeners); the fingerprint is
// three small /proc files. What a skipped read returns is what the read
// would have: no record (the queues program writes only non-empty queues).
// The interval between the fingerprint that went still and the read that
// confirms it covers a child counted just before it and queued just after
// (microseconds apart in the kernel's softirq).
func (q *QueueReader) quietRead(fn func(inode, acceptQueue uint32)) (int, error) {
	fp, ok := readFingerprint()
	still := ok && q.fpOK && fp == q.fp
	q.fp, q.fpOK = fp, ok
	if still && q.quiet {
		q.skipped++
		return q.listeners, nil
	}
	queued := 0
	n := 0
	err := withInUse(func(inUse int) error {
		var err error
		n, err = q.iter.Queues(inUse, func(inode, aq uint32) {
			queued++
			fn(inode, aq)
		})
		return err
	})
	q.quiet = err == nil && still && queued == 0
	q.listeners = n
	return n, err
}

// Close closes the namespace and the socket.
func (q *QueueReader) Close() error {
	if q.nsFD >= 0 {
		unix.Close(q.nsFD)
	}
	return q.conn.Close()
}
