// Package caps reads the effective capabilities of this process, so that
// commands can say in plain words which privilege a feature lacks.
package caps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability numbers (include/uapi/linux/capability.h).
const (
	DacReadSearch = 2
	NetAdmin      = 12
	SysPtrace     = 19
	SysAdmin      = 21
	Perfmon       = 38
	BPF           = 39
)

// Set is a capability bit set.
type Set uint64

// Has reports whether capability c is in the set.
func (s Set) Has(c uint) bool { return s&(1<<c) != 0 }

// Effective returns this process's effective capabilities.
func Effective() (Set, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("caps: %w", err)
	}
	return ParseStatus(string(b))
}

// ParseStatus finds CapEff in the contents of /proc/PID/status.
func ParseStatus(status string) (Set, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("caps: CapEff %q: %w", strings.TrimSpace(v), err)
			}
			return Set(n), nil
		}
	}
	return 0, fmt.Errorf("caps: no CapEff line in /proc/self/status")
}
