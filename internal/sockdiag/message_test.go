package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// decodeFixture decodes a captured dump (see TestCaptureFixtures).
func decodeFixture(t *testing.T, file string) []Socket {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	st := dumpState{seq: 1}
	var got []Socket
	err = st.parseBuffer(raw, func(body []byte) error {
		s, err := UnmarshalSocket(body)
		got = append(got, s)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.done || st.interrupted {
		t.Fatalf("dump state %+v, want done and not interrupted", st)
	}
	return got
}

func findBacklog(t *testing.T, socks []Socket, backlog uint32) Socket {
	t.Helper()
	for _, s := range socks {
		if s.WQueue == backlog {
			return s
		}
	}
	t.Fatalf("no listener with backlog %d in %d sockets", backlog, len(socks))
	return Socket{}
}

func TestUnmarshalCapturedListeners(t *testing.T) {
	v4 := findBacklog(t, decodeFixture(t, "testdata/listen_inet.bin"), 5)
	if v4.Family != 2 || v4.State != StateListen || v4.Src.Addr() != netip.MustParseAddr("127.0.0.1") || v4.Src.Port() == 0 {
		t.Errorf("v4 listener = %+v", v4)
	}
	if v4.RQueue != 0 || v4.Inode == 0 || v4.Info == nil || v4.Info.Sacked != 5 || v4.Info.State != StateListen {
		t.Errorf("v4 queues/info = rq %d ino %d info %+v", v4.RQueue, v4.Inode, v4.Info)
	}
	if d, ok := v4.Drops(); !ok || d != 0 || len(v4.MemInfo) != 9 {
		t.Errorf("v4 drops = %d, %v; meminfo %v", d, ok, v4.MemInfo)
	}
	if v4.V6Only != nil {
		t.Errorf("v4 listener carries V6Only")
	}
	if !v4.Full {
		t.Errorf("a listener (a full socket) decoded without INET_DIAG_SHUTDOWN")
	}

	v6 := findBacklog(t, decodeFixture(t, "testdata/listen_inet6.bin"), 7)
	if v6.Family != 10 || v6.Src.Addr() != netip.IPv6Loopback() || v6.Info == nil || v6.Info.Sacked != 7 {
		t.Errorf("v6 listener = %+v", v6)
	}
	// __inet6_bind() sets sk_ipv6only for a non-wildcard, non-mapped address.
	if v6.V6Only == nil || !*v6.V6Only {
		t.Errorf("v6 V6Only = %v, want true", v6.V6Only)
	}
}

// TestBothFamiliesInOneDump: the legacy request (AF_UNSPEC) returns IPv4
// and IPv6 listeners from one walk, in TCPDIAG_GETSOCK replies.
func TestBothFamiliesInOneDump(t *testing.T) {
	all := decodeFixture(t, "testdata/listen_all.bin")
	v4, v6 := findBacklog(t, all, 5), findBacklog(t, all, 7)
	if v4.Family != 2 || v6.Family != 10 || v4.Src.Port() == 0 || v6.Src.Port() == 0 {
		t.Errorf("v4 %+v\nv6 %+v", v4, v6)
	}
	b := marshalRequest(3, Request{Ext: ExtSKMemInfo, States: StateMask(StateSynRecv)})
	if len(b) != headerLen+legacyRequestLen || binary.NativeEndian.Uint16(b[4:6]) != tcpDiagGetSock {
		t.Fatalf("legacy request % x", b[:8])
	}
	if b[16] != 0 || b[19] != ExtSKMemInfo || binary.NativeEndian.Uint32(b[16+4+48:]) != 1<<StateSynRecv {
		t.Errorf("legacy body % x", b[16:])
	}
}

func TestRequestMarshal(t *testing.T) {
	b := marshalRequest(7, Request{Family: 10, Protocol: 6, Ext: ExtInfo | ExtSKMemInfo, States: StateMask(StateListen)})
	if len(b) != headerLen+requestLen {
		t.Fatalf("len %d", len(b))
	}
	if got := binary.NativeEndian.Uint32(b[0:4]); got != 72 {
		t.Errorf("nlmsg_len %d", got)
	}
	if b[16] != 10 || b[17] != 6 || b[18] != 0x42 || binary.NativeEndian.Uint32(b[20:24]) != 1<<10 {
		t.Errorf("body % x", b[16:24])
	}
	if binary.NativeEndian.Uint16(b[6:8]) != flagRequest|flagDump || binary.NativeEndian.Uint32(b[8:12]) != 7 {
		t.Errorf("header % x", b[:16])
	}
}

func nlmsg(typ, flags uint16, seq uint32, body []byte) []byte {
	b := make([]byte, headerLen+len(body), headerLen+len(body)+3)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	copy(b[headerLen:], body)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func errBody(code int32) []byte {
	b := make([]byte, 4+headerLen)
	binary.NativeEndian.PutUint32(b, uint32(code))
	return b
}

func TestParseBuffer(t *testing.T) {
	raw, err := os.ReadFile("testdata/listen_inet.bin")
	if err != nil {
		t.Fatal(err)
	}
	firstLen := binary.NativeEndian.Uint32(raw[0:4])
	sock := raw[headerLen:firstLen]

	cases := []struct {
		name      string
		in        []byte
		wantErr   error
		wantN     int
		done, eio bool
		intr      bool
	}{
		{name: "error reply", in: nlmsg(nlmsgError, 0, 1, errBody(-int32(syscall.EPERM))), wantErr: syscall.EPERM, done: true},
		{name: "ack", in: nlmsg(nlmsgError, 0, 1, errBody(0)), done: true},
		{name: "done with error", in: nlmsg(nlmsgDone, flagMulti, 1, errBody(-int32(syscall.ENOBUFS))[:4]), wantErr: syscall.ENOBUFS, done: true},
		{name: "interrupted", in: append(nlmsg(sockDiagByFamily, flagMulti|flagDumpIntr, 1, sock), nlmsg(nlmsgDone, flagMulti, 1, make([]byte, 4))...), wantN: 1, done: true, intr: true},
		{name: "stale sequence skipped", in: append(nlmsg(sockDiagByFamily, flagMulti, 9, sock), nlmsg(sockDiagByFamily, flagMulti, 1, sock)...), wantN: 1},
		{name: "short header", in: []byte{1, 2, 3}, wantErr: ErrShort},
		{name: "length past buffer", in: nlmsg(sockDiagByFamily, 0, 1, sock)[:40], wantErr: errAny},
		{name: "short error", in: nlmsg(nlmsgError, 0, 1, []byte{1}), wantErr: ErrShort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := dumpState{seq: 1}
			n := 0
			err := st.parseBuffer(c.in, func(body []byte) error {
				if _, err := UnmarshalSocket(body); err != nil {
					return err
				}
				n++
				return nil
			})
			switch {
			case c.wantErr == errAny && err == nil, c.wantErr != errAny && !errors.Is(err, c.wantErr):
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if n != c.wantN || st.done != c.done || st.interrupted != c.intr {
				t.Errorf("n=%d done=%v intr=%v, want %d %v %v", n, st.done, st.interrupted, c.wantN, c.done, c.intr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestUnmarshalSocketMalformed(t *testing.T) {
	raw, _ := os.ReadFile("testdata/listen_inet.bin")
	sock := append([]byte(nil), raw[headerLen:binary.NativeEndian.Uint32(raw[0:4])]...)

	if _, err := UnmarshalSocket(sock[:71]); !errors.Is(err, ErrShort) {
		t.Errorf("short message: %v", err)
	}
	bad := append([]byte(nil), sock...)
	bad[0] = 99
	if _, err := UnmarshalSocket(bad); err == nil {
		t.Error("unknown family accepted")
	}
	// An attribute claiming more bytes than remain.
	bad = append(append([]byte(nil), sock[:msgLen]...), 0xff, 0x00, 0x07, 0x00)
	if _, err := UnmarshalSocket(bad); err == nil {
		t.Error("oversized attribute accepted")
	}
	// A shorter SKMEMINFO from an older kernel: no sk_drops, no made-up zero.
	short := append(append([]byte(nil), sock[:msgLen]...), 4+8*4, 0, attrSKMemInfo, 0)
	short = append(short, make([]byte, 8*4)...)
	s, err := UnmarshalSocket(short)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Drops(); ok || len(s.MemInfo) != 8 {
		t.Errorf("8-field SKMEMINFO gave drops: %v", s.MemInfo)
	}
	// A tcp_info cut after the state byte keeps the state only.
	ti := append(append([]byte(nil), sock[:msgLen]...), 8, 0, attrInfo, 0, StateListen, 0, 0, 0)
	s, err = UnmarshalSocket(ti)
	if err != nil || s.Info == nil || s.Info.State != StateListen || s.Info.Sacked != 0 {
		t.Errorf("short tcp_info: %+v %v", s.Info, err)
	}
}

func FuzzUnmarshalSocket(f *testing.F) {
	for _, file := range []string{"testdata/listen_inet.bin", "testdata/listen_inet6.bin"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw[headerLen:binary.NativeEndian.Uint32(raw[0:4])])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalSocket(b)
		if err == nil && len(b) < msgLen {
			t.Fatalf("accepted %d bytes", len(b))
		}
		_, _ = s.Drops()
	})
}

func FuzzParseBuffer(f *testing.F) {
	for _, file := range []string{"testdata/listen_inet.bin", "testdata/listen_inet6.bin"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st := dumpState{seq: 1}
		_ = st.parseBuffer(b, func(body []byte) error {
			_, err := UnmarshalSocket(body)
			return err
		})
	})
}
