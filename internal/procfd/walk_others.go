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

// WalkPIDs finds nothing on this system.
func WalkPIDs(string, []int, map[uint32]struct{}, []Held) Result { return Result{} }

// Held is what a BPF iterator found in one process's descriptor table.
type Held struct {
	PID    int
	FDs    map[int]uint32
	Epolls []int
}

// Unvisited is not supported on this system.
func Unvisited(string, map[int]struct{}) ([]int, error) {
	return nil, fmt.Errorf("procfd: /proc is not available on %s", runtime.GOOS)
}
