//go:build !linux

package collect

import (
	"fmt"
	"runtime"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/sockdiag"
)

func readNamespace(Target, string, func() *bpfiter.Reader) (snapshot.Namespace, []snapshot.Listener, error, error, error) {
	return snapshot.Namespace{}, nil, nil, nil, fmt.Errorf("collect: listen queues can only be read on Linux, not on %s", runtime.GOOS)
}

// Dial is not supported on this system.
func Dial(Target) (*sockdiag.Conn, uint64, error) {
	return nil, 0, fmt.Errorf("collect: sock_diag is Linux-only, not supported on %s", runtime.GOOS)
}

// DumpAcceptQueues is not supported on this system.
func DumpAcceptQueues(*sockdiag.Conn, func(inode, acceptQueue uint32)) error {
	return fmt.Errorf("collect: sock_diag is Linux-only, not supported on %s", runtime.GOOS)
}

// QueueReader is not supported on this system.
type QueueReader struct{}

// OpenQueueReader is not supported on this system.
func OpenQueueReader(Target, bool) (*QueueReader, error) {
	return nil, fmt.Errorf("collect: sock_diag is Linux-only, not supported on %s", runtime.GOOS)
}

// Inode is 0 here.
func (*QueueReader) Inode() uint64 { return 0 }

// Read is not supported on this system.
func (*QueueReader) Read(func(inode, acceptQueue uint32)) (int, bool, error) {
	return 0, false, fmt.Errorf("collect: sock_diag is Linux-only, not supported on %s", runtime.GOOS)
}

// Close does nothing.
func (*QueueReader) Close() error { return nil }

// Skipped is 0: nothing is read here.
func (*QueueReader) Skipped() uint64 { return 0 }
