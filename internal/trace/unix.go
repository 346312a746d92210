package trace

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// StageUnixRefused names a UNIX connect refused because the listener's
// accept queue was full, in JSON and in the text view.
const StageUnixRefused = "unix-eagain"

// UnixRefusal is one connect(2) to a UNIX stream or seqpacket listener that
// failed with EAGAIN: the listener's queue held backlog+1
// (unix_recvq_full()), so a non-blocking connect failed at once and a
// blocking one after its SO_SNDTIMEO (unix_stream_connect()). The kernel
// counts none of these; the tracer sees each at connect(2)'s return. Its
// JSON is a line of `backlog trace --json` (docs/trace.md).
type UnixRefusal struct {
	Time      time.Time     `json:"time"`
	Monotonic time.Duration `json:"-"`
	Stage     string        `json:"stage"` // StageUnixRefused
	// Netns is the namespace of the client's socket: an abstract name is
	// looked up there; a path may lead to a listener of another namespace.
	Netns     uint64 `json:"netns"`
	Namespace string `json:"namespace,omitempty"`
	// Path is the name the client connected to, as ss prints it: a path
	// (made absolute with the client's working directory), or @abstract.
	Path string `json:"path"`
	Type string `json:"type"` // stream or seqpacket
	// Client is the process whose connect was refused.
	Client snapshot.Process `json:"client"`
	// The listener, when the caller found it by name: its namespace,
	// socket inode, queue, backlog and owners.
	ListenerNetns uint64             `json:"listener_netns,omitempty"`
	Inode         uint32             `json:"inode,omitempty"`
	AcceptQueue   *uint32            `json:"accept_queue,omitempty"`
	Backlog       *uint32            `json:"backlog,omitempty"`
	Processes     []snapshot.Process `json:"processes"`
	// Workload is the pod or container of the listener's owners.
	Workload *snapshot.Workload `json:"workload,omitempty"`
}

// rawUnixEvent is struct unix_event of bpf/backlog.c.
type rawUnixEvent struct {
	TsNs    uint64
	Pid     uint32
	Tid     uint32
	Netns   uint32
	Namelen uint32
	Type    uint16
	Comm    [16]byte
	Path    [108]byte
}

// unixEventSize is the bytes of struct unix_event the decoder reads (the
// compiled struct is padded to 160).
const unixEventSize = 156

// decodeUnixEvent decodes one record of the unix_events ring buffer.
func decodeUnixEvent(b []byte) (rawUnixEvent, error) {
	var e rawUnixEvent
	if len(b) < unixEventSize {
		return e, fmt.Errorf("%w: UNIX event of %d bytes, want %d", errShortEvent, len(b), unixEventSize)
	}
	ne := binary.NativeEndian
	e.TsNs = ne.Uint64(b[0:])
	e.Pid = ne.Uint32(b[8:])
	e.Tid = ne.Uint32(b[12:])
	e.Netns = ne.Uint32(b[16:])
	e.Namelen = ne.Uint32(b[20:])
	e.Type = ne.Uint16(b[24:])
	// b[26:32] padding
	copy(e.Comm[:], b[32:48])
	copy(e.Path[:], b[48:156])
	if e.Namelen > uint32(len(e.Path)) {
		return e, fmt.Errorf("trace: UNIX event with a name of %d bytes, at most %d fit", e.Namelen, len(e.Path))
	}
	return e, nil
}

// name returns the name as ss prints it: a path up to its NUL, or "@" and
// the abstract name with each NUL written "@"; "" when the caller gave
// none.
func (r rawUnixEvent) name() string {
	p := r.Path[:r.Namelen]
	if len(p) == 0 {
		return ""
	}
	if p[0] == 0 {
		return strings.ToValidUTF8("@"+strings.ReplaceAll(string(p[1:]), "\x00", "@"), "\uFFFD")
	}
	return strings.ToValidUTF8(cString(p), "\uFFFD")
}

func (r rawUnixEvent) refusal() UnixRefusal {
	typ := "stream"
	if r.Type == 5 { // SOCK_SEQPACKET
		typ = "seqpacket"
	}
	return UnixRefusal{
		Monotonic: time.Duration(r.TsNs),
		Stage:     StageUnixRefused,
		Netns:     uint64(r.Netns),
		Path:      r.name(),
		Type:      typ,
		Client:    snapshot.Process{PID: int(r.Pid), Comm: cString(r.Comm[:])},
	}
}
