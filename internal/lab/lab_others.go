//go:build !linux

package lab

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

func notSupported(op string) error {
	return fmt.Errorf("lab: %s: network namespaces are not supported on %s: %w", op, runtime.GOOS, ErrNotSupported)
}

// NewNamespace is not supported on this system.
func NewNamespace(string) (*Namespace, error) { return nil, notSupported("new namespace") }

// Close is not supported on this system.
func (*Namespace) Close() error { return notSupported("close namespace") }

// Do is not supported on this system.
func (*Namespace) Do(func() error) error { return notSupported("enter namespace") }

// SetSysctl is not supported on this system.
func (*Namespace) SetSysctl(string, string) error { return notSupported("set sysctl") }

// Sysctl is not supported on this system.
func (*Namespace) Sysctl(string) (string, error) { return "", notSupported("read sysctl") }

// Veth is not supported on this system.
func Veth(_, _ *Namespace, _, _ netip.Prefix) error { return notSupported("veth") }

// DropBareACKs is not supported on this system.
func (*Namespace) DropBareACKs() error { return notSupported("drop bare ACKs") }

// Listen is not supported on this system.
func (*Namespace) Listen(netip.AddrPort, int) (*Listener, error) {
	return nil, notSupported("listen")
}

// ListenNoBind is not supported on this system.
func (*Namespace) ListenNoBind(int, int) (*Listener, error) {
	return nil, notSupported("listen without bind")
}

// Accept is not supported on this system.
func (*Listener) Accept() (int, error) { return -1, notSupported("accept") }

// AcceptN is not supported on this system.
func (*Listener) AcceptN(int) ([]int, error) { return nil, notSupported("accept") }

// SetDeadline is not supported on this system.
func (*Listener) SetDeadline(time.Time) error { return notSupported("set deadline") }

// Close is not supported on this system.
func (*Listener) Close() error { return notSupported("close listener") }

// Dial is not supported on this system.
func (*Namespace) Dial(netip.AddrPort, int) (*Clients, error) { return nil, notSupported("dial") }

// Len is the number of clients: always 0 here.
func (*Clients) Len() int { return 0 }

// LocalPorts returns nothing on this system.
func (*Clients) LocalPorts() []uint16 { return nil }

// Close is not supported on this system.
func (*Clients) Close() error { return notSupported("close clients") }

// ClientStats is what the clients' own sockets say.
type ClientStats struct {
	States     map[string]int
	Retransmit int
	Resets     int
	Refused    int
}

// Stats is not supported on this system.
func (*Clients) Stats() ClientStats { return ClientStats{} }

// Send is not supported on this system.
func (*Clients) Send([]byte) int { return 0 }

// RemoveStale is not supported on this system.
func RemoveStale(string) ([]string, error) { return nil, notSupported("remove stale namespaces") }

// ListenUnix is not supported on this system.
func (*Namespace) ListenUnix(int, string, int) (*UnixListener, error) {
	return nil, notSupported("listen on unix")
}

// DialUnix is not supported on this system.
func (*Namespace) DialUnix(int, string, int) (*Clients, int, error) {
	return nil, 0, notSupported("dial unix")
}

// ConnectUnixBlocking is not supported on this system.
func (*Namespace) ConnectUnixBlocking(int, string, time.Duration) (int, error) {
	return -1, notSupported("connect unix")
}

// Accept is not supported on this system.
func (*UnixListener) Accept() (int, bool, error) { return -1, false, notSupported("accept") }

// Close is not supported on this system.
func (*UnixListener) Close() error { return notSupported("close") }

// SynQueueFullAtBacklog is not supported on this system.
func SynQueueFullAtBacklog() (bool, error) { return false, notSupported("probe the SYN-queue limit") }

// SynQueueLimit is not supported on this system.
func SynQueueLimit(int) (int, error) { return 0, notSupported("probe the SYN-queue limit") }
