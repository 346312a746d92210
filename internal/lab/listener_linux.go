package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP socket inside the namespace, binds it to addr (port 0
// picks one) and calls listen(2) with backlog, which net.Listen cannot do.
// On the unspecified IPv6 address IPV6_V6ONLY is cleared so v4 clients reach it.
func (ns *Namespace) Listen(addr netip.AddrPort, backlog int) (*Listener, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("lab: listen in %s: invalid address %s", ns.Name, addr)
	}
	a := addr.Addr()
	l, err := ns.listen(family(a), &addr, a.IsUnspecified() || a.Is4In6(), false, backlog)
	if err != nil {
		return nil, fmt.Errorf("lab: listen on %s in %s: %w", addr, ns.Name, err)
	}
	return l, nil
}

// ListenReuseport opens a listener with SO_REUSEPORT set: every socket
// that does so on the same address and port joins one group, each member
// with its own queues, and the kernel spreads new connections over them by
// a hash of the client's address and port (reuseport_select_sock()).
func (ns *Namespace) ListenReuseport(addr netip.AddrPort, backlog int) (*Listener, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("lab: listen in %s: invalid address %s", ns.Name, addr)
	}
	a := addr.Addr()
	l, err := ns.listen(family(a), &addr, a.IsUnspecified() || a.Is4In6(), true, backlog)
	if err != nil {
		return nil, fmt.Errorf("lab: listen with SO_REUSEPORT on %s in %s: %w", addr, ns.Name, err)
	}
	return l, nil
}

// ListenNoBind calls listen(2) on an unbound socket: the kernel picks an
// ephemeral port from the namespace's ip_local_port_range and the wildcard
// address (inet_autobind in net/ipv4/af_inet.c).
func (ns *Namespace) ListenNoBind(family, backlog int) (*Listener, error) {
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, fmt.Errorf("lab: listen without bind in %s: family %d is not AF_INET or AF_INET6", ns.Name, family)
	}
	l, err := ns.listen(family, nil, family == unix.AF_INET6, false, backlog)
	if err != nil {
		return nil, fmt.Errorf("lab: listen without bind in %s: %w", ns.Name, err)
	}
	return l, nil
}

func (ns *Namespace) listen(family int, addr *netip.AddrPort, dualStack, reuseport bool, backlog int) (*Listener, error) {
	if backlog < 0 {
		// The kernel would silently turn it into somaxconn (__sys_listen).
		return nil, fmt.Errorf("negative backlog %d", backlog)
	}
	var l *Listener
	err := ns.Do(func() error {
		var sa unix.Sockaddr
		if addr != nil {
			var err error
			if sa, err = sockaddr(*addr); err != nil {
				return err
			}
		}
		var err error
		l, err = listen(family, sa, dualStack, reuseport, backlog)
		return err
	})
	return l, err
}

// listen runs inside the namespace. The socket is non-blocking so the Go
// poller can wake a pending Accept on Close; close(2) alone does not.
func listen(family int, sa unix.Sockaddr, dualStack, reuseport bool, backlog int) (*Listener, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	l, err := setupListener(fd, family, sa, dualStack, reuseport, backlog)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return l, nil
}

func setupListener(fd, family int, sa unix.Sockaddr, dualStack, reuseport bool, backlog int) (*Listener, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if reuseport {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return nil, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	// Explicit, since the default follows net.ipv6.bindv6only.
	if family == unix.AF_INET6 && dualStack {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return nil, os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
		}
	}
	if sa != nil {
		if err := unix.Bind(fd, sa); err != nil {
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, os.NewSyscallError("listen", err)
	}
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	addr, port, err := addrPort(lsa)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("lab-listener:%d", port))
	if f == nil {
		return nil, errors.New("wrap listener descriptor")
	}
	return &Listener{Fd: fd, Family: family, Addr: addr, Port: port, file: f}, nil
}

// Accept waits for one connection and returns its descriptor (blocking,
// close-on-exec); the caller closes it with unix.Close. Close or an expired
// deadline ends the wait with an error.
func (l *Listener) Accept() (int, error) {
	rc, err := l.file.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("lab: accept on port %d: %w", l.Port, err)
	}
	nfd := -1
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
			switch {
			case errors.Is(aerr, unix.EINTR), errors.Is(aerr, unix.ECONNABORTED):
				continue
			case errors.Is(aerr, unix.EAGAIN):
				return false // wait for the poller
			}
			return true
		}
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		if l.closed.Load() {
			err = ErrClosed // the poller reports an unexported "use of closed file"
		}
		return -1, fmt.Errorf("lab: accept on port %d: %w", l.Port, err)
	}
	return nfd, nil
}

// AcceptN accepts n connections. On error it returns those accepted so far;
// the caller closes them all.
func (l *Listener) AcceptN(n int) ([]int, error) {
	fds := make([]int, 0, n)
	for range n {
		fd, err := l.Accept()
		if err != nil {
			return fds, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// SetDeadline bounds pending and future Accept calls; the zero time removes it.
func (l *Listener) SetDeadline(t time.Time) error {
	if err := l.file.SetReadDeadline(t); err != nil {
		return fmt.Errorf("lab: set deadline on port %d: %w", l.Port, err)
	}
	return nil
}

// Close closes the listening socket, waking any pending Accept. Connections
// still in its accept queue are reset. Close is idempotent.
func (l *Listener) Close() error {
	l.closed.Store(true)
	if err := l.file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("lab: close listener on port %d: %w", l.Port, err)
	}
	return nil
}
