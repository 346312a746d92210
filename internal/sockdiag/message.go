package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Kernel ABI numbers not in golang.org/x/sys/unix, from
// include/uapi/linux/inet_diag.h and include/net/tcp_states.h (Linux 6.18).
const (
	// Socket states, used as bit positions in Request.States.
	StateEstablished = 1
	StateSynRecv     = 3
	StateListen      = 10
	StateNewSynRecv  = 12

	// Attributes of an inet_diag_msg reply.
	attrMemInfo   = 1
	attrInfo      = 2
	attrSKMemInfo = 7
	attrShutdown  = 8
	attrV6Only    = 11

	// ExtInfo and ExtSKMemInfo ask for INET_DIAG_INFO and
	// INET_DIAG_SKMEMINFO: extension N is requested with bit 1<<(N-1).
	ExtInfo      = 1 << (attrInfo - 1)
	ExtSKMemInfo = 1 << (attrSKMemInfo - 1)

	// skMemInfoDrops indexes sk_drops in INET_DIAG_SKMEMINFO
	// (SK_MEMINFO_DROPS, include/uapi/linux/sock_diag.h).
	skMemInfoDrops = 8

	headerLen        = 16 // struct nlmsghdr
	requestLen       = 56 // struct inet_diag_req_v2
	legacyRequestLen = 60 // struct inet_diag_req
	sockIDLen        = 48 // struct inet_diag_sockid
	msgLen           = 72 // struct inet_diag_msg
)

// StateMask returns the Request.States bitmask for the given states.
func StateMask(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// Request is a dump request.
//
// Family AF_UNSPEC asks for both families in one walk of the socket
// tables, through the legacy TCPDIAG_GETSOCK request (struct inet_diag_req)
// that the kernel still serves for TCP: inet_diag_dump_compat() sets
// sdiag_family to AF_UNSPEC and __inet_diag_dump() then keeps both. A
// SYN-RECV dump walks the whole established hash, so one walk instead of
// two halves its cost on a busy host.
type Request struct {
	Family   uint8 // unix.AF_INET, unix.AF_INET6, or unix.AF_UNSPEC for both (TCP only)
	Protocol uint8 // unix.IPPROTO_TCP
	Ext      uint8 // ExtInfo | ExtSKMemInfo ...
	States   uint32
}

// MarshalBinary encodes the request body (without the netlink header). The
// socket id is left zero: a dump filters on family, protocol and states only.
func (r Request) MarshalBinary() ([]byte, error) {
	if r.Family == 0 {
		// struct inet_diag_req: family, src_len, dst_len, ext, id, states, dbug.
		b := make([]byte, legacyRequestLen)
		b[3] = r.Ext
		binary.NativeEndian.PutUint32(b[4+sockIDLen:], r.States)
		return b, nil
	}
	b := make([]byte, requestLen)
	b[0] = r.Family
	b[1] = r.Protocol
	b[2] = r.Ext
	binary.NativeEndian.PutUint32(b[4:8], r.States)
	return b, nil
}

// TCPInfo holds the fields of struct tcp_info that matter for a listener.
// For a listening socket tcp_get_info() reports the accept-queue length in
// tcpi_unacked and the backlog in tcpi_sacked (net/ipv4/tcp.c).
type TCPInfo struct {
	State   uint8
	Unacked uint32
	Sacked  uint32
}

// Socket is one decoded inet_diag_msg with the attributes backlog uses.
type Socket struct {
	Family    uint8
	State     uint8
	Timer     uint8
	Retrans   uint8
	Src       netip.AddrPort
	Dst       netip.AddrPort
	Interface uint32
	Cookie    uint64
	Expires   uint32
	RQueue    uint32 // listener: accept-queue length (sk_ack_backlog)
	WQueue    uint32 // listener: effective backlog (sk_max_ack_backlog)
	UID       uint32
	Inode     uint32

	Info    *TCPInfo // INET_DIAG_INFO, nil when absent
	MemInfo []uint32 // INET_DIAG_SKMEMINFO as sent, nil when absent
	V6Only  *bool    // INET_DIAG_SKV6ONLY, AF_INET6 sockets only
	// Full is set when the record carried INET_DIAG_SHUTDOWN, which the
	// kernel sends for every full socket (inet_diag_msg_attrs_fill()) and
	// never for a request socket (inet_req_diag_fill()).
	Full bool
}

// Drops returns the socket's sk_drops counter, if the kernel reported it.
func (s *Socket) Drops() (uint32, bool) {
	if len(s.MemInfo) <= skMemInfoDrops {
		return 0, false
	}
	return s.MemInfo[skMemInfoDrops], true
}

// ErrShort reports a message or attribute shorter than its declared layout.
var ErrShort = errors.New("sockdiag: message too short")

// UnmarshalSocket decodes one inet_diag_msg with its attributes.
func UnmarshalSocket(b []byte) (Socket, error) {
	var s Socket
	if len(b) < msgLen {
		return s, fmt.Errorf("%w: inet_diag_msg is %d bytes, want at least %d", ErrShort, len(b), msgLen)
	}
	s.Family, s.State, s.Timer, s.Retrans = b[0], b[1], b[2], b[3]
	id := b[4 : 4+sockIDLen]
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	src, dst, err := addrs(s.Family, id[4:20], id[20:36])
	if err != nil {
		return s, err
	}
	s.Src = netip.AddrPortFrom(src, sport)
	s.Dst = netip.AddrPortFrom(dst, dport)
	s.Interface = binary.NativeEndian.Uint32(id[36:40])
	// sock_diag_save_cookie(): cookie[0] is the low half.
	s.Cookie = uint64(binary.NativeEndian.Uint32(id[40:44])) | uint64(binary.NativeEndian.Uint32(id[44:48]))<<32
	s.Expires = binary.NativeEndian.Uint32(b[52:56])
	s.RQueue = binary.NativeEndian.Uint32(b[56:60])
	s.WQueue = binary.NativeEndian.Uint32(b[60:64])
	s.UID = binary.NativeEndian.Uint32(b[64:68])
	s.Inode = binary.NativeEndian.Uint32(b[68:72])

	ad := attributes{b: b[msgLen:]}
	for ad.next() {
		v := ad.value
		switch ad.typ {
		case attrInfo:
			s.Info = parseTCPInfo(v)
		case attrSKMemInfo:
			// Older kernels send fewer fields; keep what arrived.
			s.MemInfo = make([]uint32, len(v)/4)
			for i := range s.MemInfo {
				s.MemInfo[i] = binary.NativeEndian.Uint32(v[4*i:])
			}
		case attrShutdown:
			s.Full = true
		case attrV6Only:
			if len(v) >= 1 {
				on := v[0] != 0
				s.V6Only = &on
			}
		}
	}
	return s, ad.err
}

func addrs(family uint8, src, dst []byte) (netip.Addr, netip.Addr, error) {
	switch family {
	case 2: // AF_INET
		return netip.AddrFrom4([4]byte(src[:4])), netip.AddrFrom4([4]byte(dst[:4])), nil
	case 10: // AF_INET6
		return netip.AddrFrom16([16]byte(src)), netip.AddrFrom16([16]byte(dst)), nil
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("sockdiag: unknown address family %d", family)
}

// parseTCPInfo copies only the fields the kernel sent: older kernels send a
// shorter struct tcp_info.
func parseTCPInfo(v []byte) *TCPInfo {
	if len(v) < 1 {
		return nil
	}
	ti := &TCPInfo{State: v[0]}
	if len(v) >= 28 {
		ti.Unacked = binary.NativeEndian.Uint32(v[24:28])
	}
	if len(v) >= 32 {
		ti.Sacked = binary.NativeEndian.Uint32(v[28:32])
	}
	return ti
}

// attributes walks netlink attributes (struct nlattr, 4-byte aligned).
type attributes struct {
	b     []byte
	typ   uint16
	value []byte
	err   error
}

func (a *attributes) next() bool {
	if a.err != nil || len(a.b) == 0 {
		return false
	}
	if len(a.b) < 4 {
		a.err = fmt.Errorf("%w: %d trailing bytes where an attribute header belongs", ErrShort, len(a.b))
		return false
	}
	l := int(binary.NativeEndian.Uint16(a.b[0:2]))
	if l < 4 || l > len(a.b) {
		a.err = fmt.Errorf("sockdiag: attribute length %d outside 4..%d", l, len(a.b))
		return false
	}
	a.typ = binary.NativeEndian.Uint16(a.b[2:4]) & 0x3fff // strip NLA_F_NESTED, NLA_F_NET_BYTEORDER
	a.value = a.b[4:l]
	next := (l + 3) &^ 3
	if next > len(a.b) {
		next = len(a.b)
	}
	a.b = a.b[next:]
	return true
}
