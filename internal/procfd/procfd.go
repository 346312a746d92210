// Package procfd maps socket inodes to the processes that hold them, with
// one walk of /proc/*/fd.
package procfd

import (
	"bytes"
	"strconv"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Result is what one walk found.
type Result struct {
	// Owners maps a socket inode to the processes holding it, by pid.
	Owners map[uint32][]snapshot.Process
	// Denied counts processes whose descriptors could not be read (other
	// users' processes without root, CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH;
	// a security module or hidepid even for root); Refused lists them.
	Denied  int
	Refused []Refusal
}

// Refusal is a process whose descriptors could not be read, with the error
// and its command name (readable even then).
type Refusal struct {
	PID  int
	Comm string
	Err  error
}

// ParseSocketLink returns the inode of an fd symlink target "socket:[N]".
func ParseSocketLink(b []byte) (uint32, bool) {
	const prefix = "socket:["
	if !bytes.HasPrefix(b, []byte(prefix)) || len(b) < len(prefix)+2 || b[len(b)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[len(prefix):len(b)-1]), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}
