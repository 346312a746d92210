package sockdiag

import (
	"encoding/binary"
	"fmt"
)

// unix_diag ABI, from include/uapi/linux/unix_diag.h (Linux 6.18).
const (
	// UnixShow* ask for attributes in UnixRequest.Show (UDIAG_SHOW_*).
	UnixShowName    = 0x01 // UNIX_DIAG_NAME
	UnixShowVFS     = 0x02 // UNIX_DIAG_VFS
	UnixShowRQLen   = 0x10 // UNIX_DIAG_RQLEN
	UnixShowMemInfo = 0x20 // UNIX_DIAG_MEMINFO
	UnixShowUID     = 0x40 // UNIX_DIAG_UID, Linux 5.3 on

	// Attributes of a unix_diag_msg reply. UNIX_DIAG_NAME is type 0.
	unixAttrName  = 0
	unixAttrVFS   = 1
	unixAttrRQLen = 4
	unixAttrUID   = 7

	// Socket types (include/linux/net.h), in UnixSocket.Type.
	UnixStream    = 1 // SOCK_STREAM
	UnixDgram     = 2 // SOCK_DGRAM
	UnixSeqpacket = 5 // SOCK_SEQPACKET

	afUnix         = 1
	unixRequestLen = 24 // struct unix_diag_req
	unixMsgLen     = 16 // struct unix_diag_msg
)

// UnixRequest is a unix_diag dump (struct unix_diag_req). The kernel walks
// every UNIX socket of the namespace but sends only those whose state is in
// States, so a LISTEN-only dump costs a reply per listener.
type UnixRequest struct {
	States uint32 // StateMask(StateListen): unix_diag reuses TCP's state numbers
	Show   uint32 // UnixShowName | UnixShowRQLen ...
}

// MarshalBinary encodes the request body (without the netlink header):
// family, protocol, pad, states, ino, show, cookie[2]. Ino and cookie stay
// zero: a dump filters on states only.
func (r UnixRequest) MarshalBinary() ([]byte, error) {
	b := make([]byte, unixRequestLen)
	b[0] = afUnix
	binary.NativeEndian.PutUint32(b[4:8], r.States)
	binary.NativeEndian.PutUint32(b[12:16], r.Show)
	return b, nil
}

func marshalUnixRequest(seq uint32, r UnixRequest) []byte {
	body, _ := r.MarshalBinary()
	b := make([]byte, headerLen+len(body))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], sockDiagByFamily)
	binary.NativeEndian.PutUint16(b[6:8], flagRequest|flagDump)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	copy(b[headerLen:], body)
	return b
}

// UnixSocket is one decoded unix_diag_msg with the attributes backlog uses.
// An attribute the kernel did not send is nil (or empty).
type UnixSocket struct {
	Type   uint8 // UnixStream, UnixDgram, UnixSeqpacket
	State  uint8 // StateListen for a listener
	Inode  uint32
	Cookie uint64

	// Path is the file a socket is bound to (UNIX_DIAG_NAME up to its
	// first NUL); Abstract the name of an abstract socket, without its
	// leading NUL, NULs inside kept. At most one is set; neither for an
	// unbound socket.
	Path     string
	Abstract *string

	VFS *UnixVFS // UNIX_DIAG_VFS, bound to a file only
	// RQueue and WQueue come from UNIX_DIAG_RQLEN. For a listener
	// (sk_diag_show_rqlen()) they are the pending connections
	// (sk_receive_queue length) and the backlog (sk_max_ack_backlog).
	RQLen *UnixRQLen
	UID   *uint32 // UNIX_DIAG_UID
}

// UnixVFS is the device and inode of the socket file (struct
// unix_diag_vfs).
type UnixVFS struct {
	Dev   uint32
	Inode uint32
}

// UnixRQLen is struct unix_diag_rqlen.
type UnixRQLen struct {
	RQueue uint32
	WQueue uint32
}

// UnmarshalUnixSocket decodes one unix_diag_msg with its attributes.
func UnmarshalUnixSocket(b []byte) (UnixSocket, error) {
	var s UnixSocket
	if len(b) < unixMsgLen {
		return s, fmt.Errorf("%w: unix_diag_msg is %d bytes, want at least %d", ErrShort, len(b), unixMsgLen)
	}
	if b[0] != afUnix {
		return s, fmt.Errorf("sockdiag: unix_diag reply of family %d, want AF_UNIX", b[0])
	}
	s.Type, s.State = b[1], b[2]
	s.Inode = binary.NativeEndian.Uint32(b[4:8])
	s.Cookie = uint64(binary.NativeEndian.Uint32(b[8:12])) | uint64(binary.NativeEndian.Uint32(b[12:16]))<<32

	ad := attributes{b: b[unixMsgLen:]}
	for ad.next() {
		v := ad.value
		switch ad.typ {
		case unixAttrName:
			// sk_diag_dump_name(): the bytes of sun_path the address holds;
			// a path carries its terminating NUL, an abstract name starts
			// with one. A repeated attribute replaces the first.
			s.Path, s.Abstract = "", nil
			switch {
			case len(v) == 0:
			case v[0] == 0:
				a := string(v[1:])
				s.Abstract = &a
			default:
				n := 0
				for n < len(v) && v[n] != 0 {
					n++
				}
				s.Path = string(v[:n])
			}
		case unixAttrVFS:
			if len(v) < 8 {
				return s, fmt.Errorf("%w: UNIX_DIAG_VFS is %d bytes, want 8", ErrShort, len(v))
			}
			s.VFS = &UnixVFS{Inode: binary.NativeEndian.Uint32(v[0:4]), Dev: binary.NativeEndian.Uint32(v[4:8])}
		case unixAttrRQLen:
			if len(v) < 8 {
				return s, fmt.Errorf("%w: UNIX_DIAG_RQLEN is %d bytes, want 8", ErrShort, len(v))
			}
			s.RQLen = &UnixRQLen{RQueue: binary.NativeEndian.Uint32(v[0:4]), WQueue: binary.NativeEndian.Uint32(v[4:8])}
		case unixAttrUID:
			if len(v) < 4 {
				return s, fmt.Errorf("%w: UNIX_DIAG_UID is %d bytes, want 4", ErrShort, len(v))
			}
			uid := binary.NativeEndian.Uint32(v[0:4])
			s.UID = &uid
		}
	}
	return s, ad.err
}
