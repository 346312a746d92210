//go:build !linux

package sockdiag

import (
	"fmt"
	"runtime"
)

// Conn is a NETLINK_SOCK_DIAG socket; it exists only on Linux.
type Conn struct{}

// Dial is not supported on this system.
func Dial() (*Conn, error) {
	return nil, fmt.Errorf("sockdiag: sock_diag is Linux-only, not supported on %s", runtime.GOOS)
}

// Close does nothing.
func (c *Conn) Close() error { return nil }

// Dump is not supported on this system.
func (c *Conn) Dump(Request, func(*Socket) error) error {
	return fmt.Errorf("sockdiag: not supported on %s", runtime.GOOS)
}

// DumpUnix is not supported on this system.
func (c *Conn) DumpUnix(UnixRequest, func(*UnixSocket) error) error {
	return fmt.Errorf("sockdiag: not supported on %s", runtime.GOOS)
}

// DumpConsistent is not supported on this system.
func (c *Conn) DumpConsistent(func(), func(*Socket) error, ...Request) error {
	return fmt.Errorf("sockdiag: not supported on %s", runtime.GOOS)
}
