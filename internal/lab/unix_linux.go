package lab

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ListenUnix opens a UNIX socket of type typ (unix.SOCK_STREAM or
// unix.SOCK_SEQPACKET) inside the namespace, binds it to name (a path,
// "@abstract", or "" for a name the kernel picks, unix_autobind()) and calls
// listen(2) with backlog. Abstract names belong to the socket's network
// namespace; paths to the file system.
func (ns *Namespace) ListenUnix(typ int, name string, backlog int) (*UnixListener, error) {
	if typ != unix.SOCK_STREAM && typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("lab: listen on unix %q in %s: type %d is not SOCK_STREAM or SOCK_SEQPACKET", name, ns.Name, typ)
	}
	if backlog < 0 {
		return nil, fmt.Errorf("lab: listen on unix %q in %s: negative backlog %d", name, ns.Name, backlog)
	}
	var l *UnixListener
	err := ns.Do(func() error {
		var err error
		l, err = listenUnix(typ, name, backlog)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen on unix %q in %s: %w", name, ns.Name, err)
	}
	return l, nil
}

func listenUnix(typ int, name string, backlog int) (*UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*UnixListener, error) {
		unix.Close(fd)
		return nil, os.NewSyscallError(op, err)
	}
	// x/sys/unix binds "" with the family alone (autobind), "@x" as the
	// abstract name "\x00x".
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail("fstat", err)
	}
	l := &UnixListener{Fd: fd, Type: typ, Inode: uint32(st.Ino)}
	if su, ok := sa.(*unix.SockaddrUnix); ok {
		l.Name = su.Name
		if strings.HasPrefix(l.Name, "\x00") { // an autobind name comes back raw
			l.Name = "@" + l.Name[1:]
		}
	}
	l.file = os.NewFile(uintptr(fd), "lab-unix-listener:"+l.Name)
	return l, nil
}

// Accept takes one connection, without waiting: ok is false when none is
// queued. The caller closes fd with unix.Close.
func (l *UnixListener) Accept() (fd int, ok bool, err error) {
	for {
		fd, _, err = unix.Accept4(l.Fd, unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return -1, false, nil
		case err != nil:
			return -1, false, fmt.Errorf("lab: accept on unix %s: %w", l.Name, err)
		}
		return fd, true, nil
	}
}

// Close closes the socket and removes its file, if it has one. Idempotent.
func (l *UnixListener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	err := l.file.Close()
	if strings.HasPrefix(l.Name, "/") {
		if rerr := os.Remove(l.Name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("lab: close unix listener %s: %w", l.Name, err)
	}
	return nil
}

// DialUnix makes n non-blocking connects of type typ to name from inside
// the namespace. A connect the listener refuses because its queue is full
// (unix_stream_connect(): EAGAIN when unix_recvq_full() and no time to
// wait) is counted in refused and its socket closed; the others are the
// returned Clients.
func (ns *Namespace) DialUnix(typ int, name string, n int) (c *Clients, refused int, err error) {
	if n < 0 || n > maxClients {
		return nil, 0, fmt.Errorf("lab: dial unix %s from %s: %d clients, want 0..%d", name, ns.Name, n, maxClients)
	}
	c = &Clients{fds: make([]int, 0, n)}
	err = ns.Do(func() error {
		for i := range n {
			fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, os.NewSyscallError("socket", err))
			}
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: name})
			if errors.Is(err, unix.EAGAIN) {
				refused++
				unix.Close(fd)
				continue
			}
			if err != nil {
				unix.Close(fd)
				return fmt.Errorf("client %d: %w", i, os.NewSyscallError("connect", err))
			}
			c.fds = append(c.fds, fd)
		}
		return nil
	})
	if err != nil {
		return nil, 0, errors.Join(fmt.Errorf("lab: dial unix %s from %s: %w", name, ns.Name, err), c.Close())
	}
	return c, refused, nil
}

// ConnectUnixBlocking makes one blocking connect of type typ to name from
// inside the namespace and waits up to timeout (SO_SNDTIMEO, which bounds
// unix_wait_for_peer()). It returns the connected socket, or the error
// (EAGAIN once the wait ran out on a full queue).
func (ns *Namespace) ConnectUnixBlocking(typ int, name string, timeout time.Duration) (int, error) {
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		return os.NewSyscallError("socket", err)
	})
	if err != nil {
		return -1, fmt.Errorf("lab: connect unix %s from %s: %w", name, ns.Name, err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("lab: connect unix %s: %w", name, os.NewSyscallError("setsockopt SO_SNDTIMEO", err))
	}
	// The socket belongs to the namespace already; the wait need not hold
	// a thread inside it.
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: name})
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("lab: connect unix %s from %s: %w", name, ns.Name, os.NewSyscallError("connect", err))
	}
	return fd, nil
}
