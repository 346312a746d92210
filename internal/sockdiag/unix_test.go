package sockdiag

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

func decodeUnixFixture(t testing.TB) []UnixSocket {
	t.Helper()
	raw, err := os.ReadFile("testdata/listen_unix.bin")
	if err != nil {
		t.Fatal(err)
	}
	st := dumpState{seq: 1}
	var got []UnixSocket
	err = st.parseBuffer(raw, func(body []byte) error {
		s, err := UnmarshalUnixSocket(body)
		got = append(got, s)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.done {
		t.Fatal("dump not done")
	}
	return got
}

// TestUnmarshalCapturedUnixListeners decodes the four listeners of
// TestCaptureUnixFixture from the kernel's own bytes.
func TestUnmarshalCapturedUnixListeners(t *testing.T) {
	var path, abstract, auto, big *UnixSocket
	socks := decodeUnixFixture(t)
	for i := range socks {
		s := &socks[i]
		if s.State != StateListen || s.Inode == 0 || s.RQLen == nil || s.UID == nil {
			t.Errorf("listener %+v: want LISTEN, an inode, RQLEN and UID", s)
			continue
		}
		switch {
		case strings.HasSuffix(s.Path, "/fixture.sock"):
			path = s
		case strings.HasSuffix(s.Path, "/big.sock"):
			big = s
		case s.Abstract != nil && *s.Abstract == "backlog-fixture\x00x":
			abstract = s
		case s.Abstract != nil && len(*s.Abstract) == 5 && s.RQLen.WQueue == 1:
			auto = s // unix_autobind(): five hex digits
		}
	}
	if path == nil || abstract == nil || auto == nil || big == nil {
		t.Fatalf("path %v abstract %v autobind %v big %v in %d sockets", path, abstract, auto, big, len(socks))
	}
	if path.Type != UnixStream || *path.RQLen != (UnixRQLen{RQueue: 2, WQueue: 3}) || path.VFS == nil || path.VFS.Inode == 0 {
		t.Errorf("path listener %+v rqlen %+v vfs %+v", path, path.RQLen, path.VFS)
	}
	if abstract.Type != UnixSeqpacket || *abstract.RQLen != (UnixRQLen{WQueue: 7}) || abstract.VFS != nil || abstract.Path != "" {
		t.Errorf("abstract listener %+v rqlen %+v", abstract, abstract.RQLen)
	}
	// net.core.somaxconn caps listen(2) for every family (__sys_listen()).
	if big.RQLen.WQueue == 100000 || big.RQLen.WQueue == 0 {
		t.Errorf("listen(100000) shows backlog %d, want the somaxconn cap", big.RQLen.WQueue)
	}
}

func unixMsg(attrs ...[]byte) []byte {
	b := make([]byte, unixMsgLen)
	b[0], b[1], b[2] = afUnix, UnixStream, StateListen
	binary.NativeEndian.PutUint32(b[4:8], 42)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

func attr(typ uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestUnmarshalUnixSocket(t *testing.T) {
	s, err := UnmarshalUnixSocket(unixMsg(attr(unixAttrName, []byte("/run/php/fpm.sock\x00")), attr(unixAttrRQLen, []byte{5, 0, 0, 0, 4, 0, 0, 0})))
	if err != nil || s.Path != "/run/php/fpm.sock" || s.Abstract != nil || s.Inode != 42 || *s.RQLen != (UnixRQLen{5, 4}) || s.UID != nil || s.VFS != nil {
		t.Errorf("path socket %+v %v", s, err)
	}
	s, err = UnmarshalUnixSocket(unixMsg(attr(unixAttrName, []byte("\x00a\x00b"))))
	if err != nil || s.Abstract == nil || *s.Abstract != "a\x00b" || s.Path != "" || s.RQLen != nil {
		t.Errorf("abstract socket %+v %v", s, err)
	}
	// An unbound socket has no name: neither is set.
	s, err = UnmarshalUnixSocket(unixMsg())
	if err != nil || s.Abstract != nil || s.Path != "" {
		t.Errorf("unbound socket %+v %v", s, err)
	}
}

func TestUnmarshalUnixSocketMalformed(t *testing.T) {
	cases := map[string][]byte{
		"short message":   unixMsg()[:unixMsgLen-1],
		"short RQLEN":     unixMsg(attr(unixAttrRQLen, []byte{1, 0, 0, 0})),
		"short VFS":       unixMsg(attr(unixAttrVFS, []byte{1})),
		"short UID":       unixMsg(attr(unixAttrUID, []byte{1, 0})),
		"oversized attr":  append(unixMsg(), 0xff, 0, unixAttrRQLen, 0),
		"trailing bytes":  append(unixMsg(), 1, 2),
		"not AF_UNIX msg": append([]byte{2}, unixMsg()[1:]...),
	}
	for name, b := range cases {
		if _, err := UnmarshalUnixSocket(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := UnmarshalUnixSocket(unixMsg()[:3]); !errors.Is(err, ErrShort) {
		t.Errorf("short message: %v, want ErrShort", err)
	}
}

func TestUnixRequestMarshal(t *testing.T) {
	b := marshalUnixRequest(5, UnixRequest{States: StateMask(StateListen), Show: UnixShowName | UnixShowRQLen})
	if len(b) != headerLen+unixRequestLen || binary.NativeEndian.Uint32(b[0:4]) != 40 {
		t.Fatalf("len %d", len(b))
	}
	if binary.NativeEndian.Uint16(b[4:6]) != sockDiagByFamily || binary.NativeEndian.Uint32(b[8:12]) != 5 {
		t.Errorf("header % x", b[:16])
	}
	if b[16] != afUnix || binary.NativeEndian.Uint32(b[20:24]) != 1<<10 || binary.NativeEndian.Uint32(b[28:32]) != 0x11 {
		t.Errorf("body % x", b[16:])
	}
}

// TestUnixDiagMissing: a kernel without unix_diag answers the dump with
// NLMSG_ERROR ENOENT (__sock_diag_cmd()); the caller can tell it apart.
func TestUnixDiagMissing(t *testing.T) {
	st := dumpState{seq: 1}
	err := st.parseBuffer(nlmsg(nlmsgError, 0, 1, errBody(-int32(syscall.ENOENT))), func([]byte) error { return nil })
	if !errors.Is(err, syscall.ENOENT) || !st.done {
		t.Errorf("err %v done %v", err, st.done)
	}
}

func FuzzUnmarshalUnixSocket(f *testing.F) {
	raw, err := os.ReadFile("testdata/listen_unix.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw[headerLen:binary.NativeEndian.Uint32(raw[0:4])])
	f.Add(unixMsg(attr(unixAttrName, []byte("\x00a")), attr(unixAttrVFS, make([]byte, 8)), attr(unixAttrUID, make([]byte, 4))))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalUnixSocket(b)
		if err != nil {
			return
		}
		if len(b) < unixMsgLen {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if s.Abstract != nil && s.Path != "" {
			t.Fatalf("both a path and an abstract name: %+v", s)
		}
		if strings.ContainsRune(s.Path, 0) {
			t.Fatalf("path with a NUL: %q", s.Path)
		}
	})
}

func FuzzParseUnixBuffer(f *testing.F) {
	raw, err := os.ReadFile("testdata/listen_unix.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		st := dumpState{seq: 1}
		_ = st.parseBuffer(b, func(body []byte) error {
			_, err := UnmarshalUnixSocket(body)
			return err
		})
	})
}
