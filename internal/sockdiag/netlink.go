package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// Netlink message types and flags (include/uapi/linux/netlink.h).
const (
	nlmsgError = 2
	nlmsgDone  = 3

	flagRequest  = 0x1
	flagMulti    = 0x2
	flagDumpIntr = 0x10
	flagRoot     = 0x100
	flagMatch    = 0x200
	flagDump     = flagRoot | flagMatch

	sockDiagByFamily = 20
	tcpDiagGetSock   = 18 // the legacy request and reply type, TCP only
)

// ErrDumpInterrupted means the kernel flagged the dump NLM_F_DUMP_INTR: the
// socket tables changed while it was walking them, so the result may miss or
// repeat sockets.
var ErrDumpInterrupted = errors.New("sockdiag: dump interrupted by concurrent changes (NLM_F_DUMP_INTR)")

// header is a struct nlmsghdr.
type header struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	PID   uint32
}

func marshalRequest(seq uint32, r Request) []byte {
	body, _ := r.MarshalBinary()
	b := make([]byte, headerLen+len(body))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	typ := uint16(sockDiagByFamily)
	if r.Family == 0 {
		typ = tcpDiagGetSock
	}
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flagRequest|flagDump)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	copy(b[headerLen:], body)
	return b
}

// dumpState tracks one dump across receive buffers.
type dumpState struct {
	seq         uint32
	done        bool
	interrupted bool
}

// parseBuffer walks the netlink messages of one received buffer, passing
// each inet_diag_msg body to fn. It returns once the buffer is used up; the
// dump is over when st.done is set.
func (st *dumpState) parseBuffer(b []byte, fn func(body []byte) error) error {
	for len(b) > 0 {
		if len(b) < headerLen {
			return fmt.Errorf("%w: %d bytes where a netlink header belongs", ErrShort, len(b))
		}
		h := header{
			Len:   binary.NativeEndian.Uint32(b[0:4]),
			Type:  binary.NativeEndian.Uint16(b[4:6]),
			Flags: binary.NativeEndian.Uint16(b[6:8]),
			Seq:   binary.NativeEndian.Uint32(b[8:12]),
		}
		if h.Len < headerLen || int(h.Len) > len(b) {
			return fmt.Errorf("sockdiag: netlink message length %d outside %d..%d", h.Len, headerLen, len(b))
		}
		body := b[headerLen:h.Len]
		next := (int(h.Len) + 3) &^ 3
		if next > len(b) {
			next = len(b)
		}
		b = b[next:]

		if h.Seq != st.seq {
			continue // a stale reply to an earlier, abandoned request
		}
		if h.Flags&flagDumpIntr != 0 {
			st.interrupted = true
		}
		switch h.Type {
		case nlmsgDone:
			st.done = true
			// Since Linux 4.? NLMSG_DONE carries the dump's return code.
			if len(body) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(body[0:4])); code < 0 {
					return syscall.Errno(-code)
				}
			}
			return nil
		case nlmsgError:
			if len(body) < 4 {
				return fmt.Errorf("%w: NLMSG_ERROR of %d bytes", ErrShort, len(body))
			}
			st.done = true
			if code := int32(binary.NativeEndian.Uint32(body[0:4])); code < 0 {
				return syscall.Errno(-code)
			}
			return nil // an acknowledgement
		case sockDiagByFamily, tcpDiagGetSock:
			if err := fn(body); err != nil {
				return err
			}
		}
	}
	return nil
}

// OpError is a failed sock_diag operation.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return "sockdiag: " + e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }
