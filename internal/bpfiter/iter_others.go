//go:build !linux || !amd64

package bpfiter

import (
	"fmt"
	"runtime"
)

// Check reports that the iterators are built for amd64 only.
func Check() error {
	return fmt.Errorf("%w: built for amd64 only, not %s", ErrNotSupported, runtime.GOARCH)
}

// Reader is unavailable here.
type Reader struct{}

// Open fails: see Check.
func Open() (*Reader, error) { return nil, Check() }

// Close does nothing.
func (r *Reader) Close() error { return nil }

// Listeners fails: see Check.
func (r *Reader) Listeners(int) ([]Listener, error) { return nil, Check() }

// Owners fails: see Check.
func (r *Reader) Owners() (Owners, error) { return Owners{}, Check() }

// Queues fails: see Check.
func (r *Reader) Queues(int, func(inode, acceptQueue uint32)) (int, error) { return 0, Check() }
