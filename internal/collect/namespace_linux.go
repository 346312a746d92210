package collect

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/procnet"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/sockdiag"
	"github.com/backlog-dev/backlog/internal/sysctl"
	"golang.org/x/sys/unix"
)

// perFamily makes dumpBoth send one inet_diag_req_v2 request per family:
// set once a kernel refuses the one-walk request, and by tests.
var perFamily atomic.Bool

// dumpBoth dumps the IPv4 and IPv6 TCP sockets req asks for (its Family is
// ignored), calling begin before each attempt and fn for each socket. It
// asks for both families in one walk (sockdiag.Request with AF_UNSPEC):
// a SYN-RECV dump walks the whole established hash, so one walk instead of
// two halves its cost. A kernel that refuses that request gets one
// inet_diag_req_v2 request per family instead.
func dumpBoth(conn *sockdiag.Conn, req sockdiag.Request, begin func(), fn func(*sockdiag.Socket) error) error {
	if !perFamily.Load() {
		req.Family = unix.AF_UNSPEC
		err := conn.DumpConsistent(begin, fn, req)
		var errno syscall.Errno
		if err == nil || !errors.As(err, &errno) {
			return err
		}
		perFamily.Store(true) // refused (EINVAL, EOPNOTSUPP...): per family from now on
	}
	v4, v6 := req, req
	v4.Family, v6.Family = unix.AF_INET, unix.AF_INET6
	return conn.DumpConsistent(begin, fn, v4, v6)
}

// readNamespace reads one namespace. Inside it (on a locked thread) it opens
// the sock_diag socket and reads counters and sysctls, which resolve by the
// thread's namespace; the dumps then run on that socket from here.
// A failure to list UNIX listeners leaves the TCP ones complete and comes
// back as unixErr.
//
// With the iterators (loaded() waits for them, after the counters are
// read), the TCP listeners come from iter/tcp read on that thread
// (an iterator sees the namespace it is opened in); if that fails they
// come from sock_diag and iterErr says why.
func readNamespace(t Target, procRoot string, loaded func() *bpfiter.Reader) (ns snapshot.Namespace, ls []snapshot.Listener, unixErr, iterErr, err error) {
	var iter *bpfiter.Reader
	ns = snapshot.Namespace{Name: t.Name, Inode: t.Inode}
	var (
		conn    *sockdiag.Conn
		partial []error
	)
	inside := func() error {
		id, err := netns.Current()
		if err != nil {
			return err
		}
		ns.Inode = id.Inode
		if ns.Name == "" {
			ns.Name = ownName(procRoot, id)
		}
		// /proc/self/net follows the main thread: name this thread.
		ns.Counters, err = procnet.ReadCounters(procRoot+"/self/task", unix.Gettid())
		if err != nil {
			partial = append(partial, err)
		}
		ns.Sysctls, err = sysctl.Read(procRoot + "/sys")
		if err != nil {
			partial = append(partial, err)
		}
		if iter = loaded(); iter != nil {
			ls, iterErr = iterListeners(iter, id.Inode)
		}
		conn, err = sockdiag.Dial()
		return err
	}
	err = enter(t, inside)
	if err != nil {
		return ns, nil, nil, nil, err
	}
	defer conn.Close()

	if iter == nil || iterErr != nil {
		ls, err = dumpListeners(conn, ns.Inode)
		if err != nil {
			return ns, nil, nil, iterErr, err
		}
		if err := countSynQueues(conn, ls); err != nil {
			return ns, nil, nil, iterErr, err
		}
	}
	uls, unixErr := dumpUnixListeners(conn, ns.Inode)
	ls = append(ls, uls...)
	if len(partial) > 0 {
		// Counters or sysctls missing: the listeners are still right.
		ns.Error = fmt.Sprintf("%s: %v", partlyRead, errors.Join(partial...))
	}
	return ns, ls, unixErr, iterErr, nil
}

// ownName names the caller's own namespace when no Resolve named it, as
// Resolve names it: one name whatever the privilege or the flags.
func ownName(procRoot string, id netns.ID) string {
	initID, _ := netns.InitID(procRoot)
	f := netns.Found{ID: id, Mount: netns.MountOf(id, netns.DefaultDirs)}
	if f.Mount == "" && id != initID {
		f.PID = netns.LowestPID(procRoot, id)
	}
	return target(procRoot, f, initID).Name
}

func onLockedThread(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return fn()
}

// enter runs fn on a locked thread inside t's namespace.
func enter(t Target, fn func() error) error {
	if t.Path == "" {
		return onLockedThread(fn)
	}
	return netns.Do(t.Path, fn)
}

// Dial opens a sock_diag socket inside t's namespace and returns it with the
// namespace's inode. The socket stays in that namespace, so a caller that
// samples often (internal/sampler) enters it once, not on every read.
func Dial(t Target) (*sockdiag.Conn, uint64, error) {
	var (
		conn  *sockdiag.Conn
		inode uint64
	)
	err := enter(t, func() error {
		id, err := netns.Current()
		if err != nil {
			return err
		}
		inode = id.Inode
		conn, err = sockdiag.Dial()
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("opening sock_diag in namespace %s: %w", t.Name, err)
	}
	return conn, inode, nil
}

// listenRequest asks for the LISTEN sockets of one family with extensions
// ext.
func listenRequest(ext uint8) sockdiag.Request {
	return sockdiag.Request{Protocol: unix.IPPROTO_TCP, Ext: ext, States: sockdiag.StateMask(sockdiag.StateListen)}
}

// DumpAcceptQueues calls fn with the socket inode and accept-queue length of
// every listener conn sees, TCP and UNIX. It asks for no extensions (for
// UNIX only the queue lengths), the cheapest dumps there are, for samplers
// that run many times a second. fn may see a socket twice when a dump is
// restarted. A kernel without unix_diag gives the TCP listeners alone; the
// snapshot says so.
func DumpAcceptQueues(conn *sockdiag.Conn, fn func(inode, acceptQueue uint32)) error {
	err := dumpBoth(conn, listenRequest(0), func() {}, func(s *sockdiag.Socket) error {
		fn(s.Inode, s.RQueue)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing listeners: %w", err)
	}
	err = dumpUnix(conn, sockdiag.UnixShowRQLen, func(s *sockdiag.UnixSocket) {
		if s.RQLen != nil {
			fn(s.Inode, s.RQLen.RQueue)
		}
	})
	if err != nil && !errors.Is(err, ErrNoUnixDiag) {
		return fmt.Errorf("listing UNIX listeners: %w", err)
	}
	return nil
}

// dumpListeners dumps LISTEN sockets only: that walks the listening hash
// alone, so its cost follows listeners, not connections (the kernel
// skips the established hash when the state mask is LISTEN only), measured
// 5-8 ms for 10,000 listeners beside 100,000 connections, against 35-42 ms
// for a mask with any other state.
func dumpListeners(conn *sockdiag.Conn, nsInode uint64) ([]snapshot.Listener, error) {
	var ls []snapshot.Listener
	req := listenRequest(sockdiag.ExtInfo | sockdiag.ExtSKMemInfo)
	err := dumpBoth(conn, req, func() { ls = ls[:0] }, func(s *sockdiag.Socket) error {
		ls = append(ls, listenerOf(s, nsInode))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing listeners: %w", err)
	}
	return ls, nil
}

func listenerOf(s *sockdiag.Socket, nsInode uint64) snapshot.Listener {
	l := snapshot.Listener{
		Netns:       nsInode,
		Family:      snapshot.FamilyInet,
		Address:     s.Src.Addr(),
		Port:        s.Src.Port(),
		Inode:       s.Inode,
		AcceptQueue: s.RQueue,
		Backlog:     s.WQueue,
		V6Only:      s.V6Only,
	}
	if s.Family == unix.AF_INET6 {
		l.Family = snapshot.FamilyInet6
	}
	if d, ok := s.Drops(); ok {
		v := uint64(d)
		l.Drops = &v
	}
	return l
}

// countSynQueues dumps request sockets and adds each to its listener. This
// dump walks the established hash too (any non-LISTEN state does), but only
// request sockets come back; the kernel adds NEW_SYN_RECV to a SYN_RECV
// mask itself (inet_diag_dump_icsk()).
func countSynQueues(conn *sockdiag.Conn, ls []snapshot.Listener) error {
	if len(ls) == 0 {
		return nil
	}
	idx := newSynIndex(ls)
	req := sockdiag.Request{Protocol: unix.IPPROTO_TCP, States: sockdiag.StateMask(sockdiag.StateSynRecv)}
	err := dumpBoth(conn, req, idx.reset, func(s *sockdiag.Socket) error {
		idx.add(s.Src, s.Full)
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting SYN queues: %w", err)
	}
	idx.apply()
	return nil
}
