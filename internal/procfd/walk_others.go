//go:build !linux

package procfd

import (
	"fmt"
	"runtime"
)

// Walk is not supported on this system.
func Walk(string, map[uint32]struct{}) (Result, error) {
	return Result{}, fmt.Errorf("procfd: /proc is not available on %s", runtime.GOOS)
}
