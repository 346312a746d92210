//go:build !linux

package netns

import (
	"fmt"
	"runtime"
)

// ID identifies a network namespace.
type ID struct {
	Dev   uint64
	Inode uint64
}

var errNotSupported = fmt.Errorf("netns: network namespaces are not supported on %s", runtime.GOOS)

// Stat is not supported on this system.
func Stat(string) (ID, error) { return ID{}, errNotSupported }

// Current is not supported on this system.
func Current() (ID, error) { return ID{}, errNotSupported }

// Do is not supported on this system.
func Do(string, func() error) error { return errNotSupported }

// DoFd is not supported on this system.
func DoFd(int, string, func() error) error { return errNotSupported }
