package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// maxClients bounds Dial: each client is a descriptor of this process.
const maxClients = 10000

// Dial starts n non-blocking TCP connects to `to` from inside the namespace
// and returns without waiting for them to complete.
func (ns *Namespace) Dial(to netip.AddrPort, n int) (*Clients, error) {
	if !to.IsValid() || to.Port() == 0 {
		return nil, fmt.Errorf("lab: dial %s from %s: invalid address", to, ns.Name)
	}
	if n < 0 || n > maxClients {
		return nil, fmt.Errorf("lab: dial %s from %s: %d clients, want 0..%d", to, ns.Name, n, maxClients)
	}
	c := &Clients{fds: make([]int, 0, n)}
	err := ns.Do(func() error {
		sa, err := sockaddr(to)
		if err != nil {
			return err
		}
		for i := range n {
			fd, err := dialOne(family(to.Addr()), sa)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			c.fds = append(c.fds, fd)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lab: dial %s from %s: %w", to, ns.Name, err), c.Close())
	}
	return c, nil
}

func dialOne(family int, sa unix.Sockaddr) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	// Linger 0: close sends RST and leaves no TIME_WAIT (tcp_close,
	// "Check zero linger _after_ checking for unread data").
	lerr := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if lerr != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("setsockopt SO_LINGER", lerr)
	}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// Len is the number of clients.
func (c *Clients) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.fds)
}

// LocalPorts returns each client's local port, in Dial order, so tests can
// match the peers a server sees. A port that cannot be read is 0.
func (c *Clients) LocalPorts() []uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ports := make([]uint16, len(c.fds))
	if c.closed {
		return ports
	}
	for i, fd := range c.fds {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if _, port, err := addrPort(sa); err == nil {
			ports[i] = port
		}
	}
	return ports
}

// Close closes every client; with linger 0 each sends RST. Idempotent.
func (c *Clients) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, fd := range c.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, os.NewSyscallError("close", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab: close clients: %w", err)
	}
	return nil
}
