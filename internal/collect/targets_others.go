//go:build !linux

package collect

import (
	"fmt"
	"runtime"

	"github.com/backlog-dev/backlog/internal/workload"
)

// Resolve is not supported on this system.
func Resolve([]string, string, []string) (Resolution, error) {
	return Resolution{}, fmt.Errorf("collect: network namespaces are Linux-only, not supported on %s", runtime.GOOS)
}

// ResolveWith is not supported on this system.
func ResolveWith([]string, string, []string, *workload.Resolver) (Resolution, error) {
	return Resolve(nil, "", nil)
}
