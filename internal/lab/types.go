package lab

import (
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/backlog-dev/backlog/internal/netns"
)

// Namespace is a named network namespace bind-mounted at Path
// (/run/netns/Name), the way `ip netns add` makes one.
type Namespace struct {
	Name string
	Path string

	mu       sync.Mutex
	closed   bool
	dropACKs bool     // DropBareACKs already installed its rule
	id       netns.ID // this namespace
	parent   netns.ID // the namespace it was created from
}

// Listener is a raw TCP listening socket opened inside a Namespace.
type Listener struct {
	Fd     int // valid until Close; non-blocking, so use Accept rather than accept(2)
	Family int // unix.AF_INET or unix.AF_INET6
	Addr   netip.Addr
	Port   uint16

	file   *os.File // owns Fd and lets Close wake a blocked Accept
	closed atomic.Bool
}

// UnixListener is a UNIX stream or seqpacket listening socket opened inside
// a Namespace.
type UnixListener struct {
	Fd    int    // valid until Close; non-blocking, so use Accept rather than accept(2)
	Type  int    // unix.SOCK_STREAM or unix.SOCK_SEQPACKET
	Name  string // as the kernel names it and ss prints it: a path, or @abstract
	Inode uint32 // the socket's inode (socket:[N])

	file   *os.File
	closed atomic.Bool
}

// Clients are sockets connecting from inside a Namespace.
type Clients struct {
	mu     sync.Mutex
	fds    []int
	closed bool
}
