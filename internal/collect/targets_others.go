//go:build !linux

package collect

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/backlog-dev/backlog/internal/workload"
)

// ErrBadSpec is a --netns value that names no namespace.
var ErrBadSpec = errors.New("bad --netns")

// Resolve is not supported on this system.
func Resolve(string, string, []string) ([]Target, string, error) {
	return nil, "", fmt.Errorf("collect: network namespaces are Linux-only, not supported on %s", runtime.GOOS)
}

// ResolveWith is not supported on this system.
func ResolveWith(string, string, []string, *workload.Resolver) ([]Target, string, error) {
	return Resolve("", "", nil)
}
