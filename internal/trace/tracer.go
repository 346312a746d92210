package trace

import (
	"errors"
	"fmt"
	"strings"
)

// Namespace is a network namespace whose listeners the tracer learns at
// start and whose name it puts on events.
type Namespace struct {
	// Path is an nsfs file (/proc/PID/ns/net, /run/netns/NAME); empty is
	// the caller's own namespace.
	Path  string
	Name  string
	Inode uint64 // 0: stat Path
}

// Programs chooses the eBPF program types.
type Programs string

const (
	// ProgramsAuto tries tp_btf, then raw_tp.
	ProgramsAuto Programs = ""
	// ProgramsTpBtf uses BTF-enabled tracepoints only (Linux 5.5+).
	ProgramsTpBtf Programs = "tp_btf"
	// ProgramsRawTp uses raw tracepoints only (Linux 4.17+ with BTF).
	ProgramsRawTp Programs = "raw_tp"
)

// Options say what to trace.
type Options struct {
	// Namespaces are read for their existing listeners at start (a
	// listener opened later is seen wherever it is opened) and name events.
	// Empty: the caller's own namespace.
	Namespaces []Namespace
	// OnlyNamespaces restricts events to Namespaces, in the kernel.
	// Otherwise events come from every namespace, new ones included.
	OnlyNamespaces bool
	// Ports keeps only listeners on these ports, in the kernel.
	Ports []uint16
	// NoAcceptWait leaves out the accept-wait histograms, and with them
	// the hook on every system call's exit: the cheapest trace.
	NoAcceptWait bool
	// NoUnix leaves out UNIX connects refused with EAGAIN (RunUnix), and
	// with them the hook on every system call's entry.
	NoUnix bool
	// ProcRoot is where owners of older listeners are looked up ("/proc").
	ProcRoot string
	Programs Programs
}

// MissingStage is a stage this kernel cannot trace, and why. Such a stage
// is absent from the counts, not zero.
type MissingStage struct {
	Stage  Stage  `json:"stage"`
	Reason string `json:"reason"`
}

// ErrNotSupported means tracing cannot work on this system at all.
var ErrNotSupported = errors.New("trace is not supported on this system")

// MissingError lists what the host lacks for tracing, in words a person can
// act on. It matches ErrNotSupported only for a wrong OS or architecture.
type MissingError struct {
	Missing []string
}

func (e *MissingError) Error() string {
	return "trace needs " + strings.Join(e.Missing, ", and ")
}

// Counters are the tracer's own health counters.
type Counters struct {
	// Lost events: the ring buffer was full (user space too slow).
	Lost uint64 `json:"lost"`
	// Unmatched SYNs: a listener took the SYN, no SYN-ACK left at once,
	// yet none of the drop conditions held when it was freed: the SYN-ACK
	// waited for ARP/ND, or a security module or a failed allocation
	// refused the SYN. Not counted as drops.
	Unmatched uint64 `json:"unmatched"`
	// Ambiguous events: several SO_REUSEPORT members of the address met
	// the drop condition and this kernel does not say which one the packet
	// reached (no fentry on tcp_conn_request). The event names the address
	// without an inode; it is counted by stage all the same.
	Ambiguous uint64 `json:"ambiguous"`
}

func (c Counters) String() string {
	return fmt.Sprintf("lost=%d unmatched=%d ambiguous=%d", c.Lost, c.Unmatched, c.Ambiguous)
}
