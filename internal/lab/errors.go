package lab

import "errors"

var (
	// ErrNotSupported is returned on systems without network namespaces.
	ErrNotSupported = errors.New("not supported")

	// ErrClosed is returned when a closed Namespace, Listener or Clients is used.
	ErrClosed = errors.New("already closed")
)
