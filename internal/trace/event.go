package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Stage says where in the handshake a listener dropped (or diverted) it.
// The numbers are those of bpf/backlog.c.
type Stage uint8

const (
	// StageSyn: the accept queue was full when the SYN arrived
	// (tcp_conn_request(), counted in ListenOverflows and ListenDrops).
	StageSyn Stage = 1
	// StageSynQueue: the SYN queue was full and SYN cookies are off
	// (inet_csk_reqsk_queue_is_full(), TCPReqQFullDrop).
	StageSynQueue Stage = 2
	// StageAck: the accept queue was full when the final ACK arrived
	// (tcp_check_req(), ListenOverflows).
	StageAck Stage = 3
	// StageCookie: the SYN queue was full, so the SYN was answered with a
	// SYN cookie instead of being queued (SyncookiesSent). Not a drop: the
	// connection can still complete, without its TCP options.
	StageCookie Stage = 4
	// StageSynBacklog: without cookies, the last quarter of
	// net.ipv4.tcp_max_syn_backlog is kept for peers already proven alive
	// (tcp_conn_request(), counted only in ListenDrops).
	StageSynBacklog Stage = 5
	// StageClose: the listener closed (close(2), a worker exiting) with
	// connections in its accept queue or SYN queue. inet_csk_listen_stop()
	// resets each queued one; a half-open one gets a RST when its final
	// ACK arrives. With net.ipv4.tcp_migrate_req=1 (Linux 5.14+) and
	// another SO_REUSEPORT member listening they move to it instead. One
	// event per close; its count is Event.Resets. Not in ListenDrops.
	StageClose Stage = 6
)

// Stages lists every stage in the order views print them.
var Stages = []Stage{StageSyn, StageSynQueue, StageAck, StageCookie, StageSynBacklog, StageClose}

var stageNames = map[Stage]string{
	StageSyn:        "syn",
	StageSynQueue:   "syn-queue",
	StageAck:        "ack",
	StageCookie:     "cookie",
	StageSynBacklog: "syn-backlog",
	StageClose:      "close",
}

func (s Stage) String() string {
	if n, ok := stageNames[s]; ok {
		return n
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// MarshalText makes a stage its name in JSON, as value and as map key.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a stage name.
func (s *Stage) UnmarshalText(b []byte) error {
	for st, n := range stageNames {
		if n == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("unknown stage %q", b)
}

// Event is one dropped (or cookie-answered) handshake packet. Its JSON is
// one line of `backlog trace --json` (docs/trace.md).
type Event struct {
	Time time.Time `json:"time"`
	// Monotonic is the CLOCK_MONOTONIC time of the event, for ordering it
	// against other clocks of this host.
	Monotonic time.Duration `json:"-"`
	Netns     uint64        `json:"netns"`
	Namespace string        `json:"namespace,omitempty"`
	Stage     Stage         `json:"stage"`
	// Listener is the listening socket's bound address and port.
	Listener netip.AddrPort `json:"listener"`
	// Local is the address the peer sent to (the listener's may be a
	// wildcard).
	Local netip.Addr     `json:"local"`
	Peer  netip.AddrPort `json:"peer"`
	// The listener's queues at that moment: accept queue (sk_ack_backlog),
	// SYN queue (request sockets), backlog (sk_max_ack_backlog).
	AcceptQueue uint32 `json:"accept_queue"`
	SynQueue    uint32 `json:"syn_queue"`
	Backlog     uint32 `json:"backlog"`
	// Inode is the listener's socket inode: each SO_REUSEPORT member has
	// its own. 0 when unknown (several members met the drop condition).
	Inode uint64 `json:"inode,omitempty"`
	// Stage close only: whether the queued connections moved to another
	// SO_REUSEPORT member (net.ipv4.tcp_migrate_req), and how many
	// clients were reset (AcceptQueue + SynQueue when they did not move).
	Migrated bool   `json:"migrated,omitempty"`
	Resets   uint32 `json:"resets,omitempty"`
	// Processes own the listener: the one that called listen(2), or for a
	// listener older than the trace those found holding its socket.
	Processes []snapshot.Process `json:"processes"`
	// Workload is the pod or container of the owners (filled by the
	// caller: docs/json.md says how it is decided).
	Workload *snapshot.Workload `json:"workload,omitempty"`
}

// rawEvent is struct event of bpf/backlog.c.
type rawEvent struct {
	TsNs        uint64
	Ino         uint64
	Netns       uint32
	Pid         uint32
	AcceptQueue uint32
	SynQueue    uint32
	Backlog     uint32
	Lport       uint16
	Rport       uint16
	Stage       uint8
	Family      uint8
	Lfamily     uint8
	Migrated    uint8
	Laddr       [16]byte
	Daddr       [16]byte
	Raddr       [16]byte
	Comm        [16]byte
}

// eventSize is sizeof(struct event).
const eventSize = 112

// Address families (include/linux/socket.h).
const (
	afInet  = 2
	afInet6 = 10
)

var errShortEvent = errors.New("trace: short event record")

// decodeEvent decodes one ring-buffer record; longer records (a newer
// program) are accepted, shorter ones are not.
func decodeEvent(b []byte) (rawEvent, error) {
	var e rawEvent
	if len(b) < eventSize {
		return e, fmt.Errorf("%w: %d bytes, want %d", errShortEvent, len(b), eventSize)
	}
	ne := binary.NativeEndian
	e.TsNs = ne.Uint64(b[0:])
	e.Ino = ne.Uint64(b[8:])
	e.Netns = ne.Uint32(b[16:])
	e.Pid = ne.Uint32(b[20:])
	e.AcceptQueue = ne.Uint32(b[24:])
	e.SynQueue = ne.Uint32(b[28:])
	e.Backlog = ne.Uint32(b[32:])
	e.Lport = ne.Uint16(b[36:])
	e.Rport = ne.Uint16(b[38:])
	e.Stage = b[40]
	e.Family = b[41]
	e.Lfamily = b[42]
	e.Migrated = b[43]
	// b[44:48] padding
	copy(e.Laddr[:], b[48:64])
	copy(e.Daddr[:], b[64:80])
	copy(e.Raddr[:], b[80:96])
	copy(e.Comm[:], b[96:112])
	if _, ok := stageNames[Stage(e.Stage)]; !ok {
		return e, fmt.Errorf("trace: event with unknown stage %d", e.Stage)
	}
	if !validFamily(e.Family) || !validFamily(e.Lfamily) {
		return e, fmt.Errorf("trace: event with unknown address family %d/%d", e.Family, e.Lfamily)
	}
	return e, nil
}

func validFamily(f uint8) bool { return f == afInet || f == afInet6 }

// addr reads an address of family f from the 16 bytes the program fills
// (IPv4 in the first four).
func addr(f uint8, b [16]byte) netip.Addr {
	if f == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// event turns a decoded record into an Event; the caller adds the time,
// names and owners.
func (r rawEvent) event() Event {
	e := Event{
		Monotonic:   time.Duration(r.TsNs),
		Netns:       uint64(r.Netns),
		Stage:       Stage(r.Stage),
		Listener:    netip.AddrPortFrom(addr(r.Lfamily, r.Laddr), r.Lport),
		Local:       addr(r.Family, r.Daddr),
		Peer:        netip.AddrPortFrom(addr(r.Family, r.Raddr), r.Rport),
		AcceptQueue: r.AcceptQueue,
		SynQueue:    r.SynQueue,
		Backlog:     r.Backlog,
		Inode:       r.Ino,
	}
	if e.Stage == StageClose {
		e.Migrated = r.Migrated != 0
		if !e.Migrated {
			e.Resets = r.AcceptQueue + r.SynQueue
		}
	}
	if r.Pid != 0 {
		e.Processes = []snapshot.Process{{PID: int(r.Pid), Comm: cString(r.Comm[:])}}
	}
	return e
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
