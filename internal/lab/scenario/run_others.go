//go:build !linux

package scenario

import (
	"context"
	"fmt"
	"runtime"
)

// Run is a scenario in progress; Linux only.
type Run struct{}

// Execute is not supported on this system.
func Execute(context.Context, string, Params) (*Result, error) {
	return nil, fmt.Errorf("backlog lab needs Linux network namespaces, not available on %s", runtime.GOOS)
}
