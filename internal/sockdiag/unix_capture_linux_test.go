package sockdiag

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCaptureUnixFixture records the raw bytes of a real LISTEN-only
// unix_diag dump with four listeners this test makes: a stream socket on
// a path with backlog 3 and two pending connections, a seqpacket socket on
// the abstract name "\x00backlog-fixture\x00x" with backlog 7, an autobind
// stream socket with backlog 1, and a stream socket on a path with
// listen(100000), capped by somaxconn. Run with -update to refresh
// testdata/listen_unix.bin.
func TestCaptureUnixFixture(t *testing.T) {
	if !*update {
		t.Skip("fixtures are refreshed only with -update")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "fixture.sock")
	l1 := unixListen(t, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: path}, 3)
	for range 2 {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c)
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
	}
	l2 := unixListen(t, unix.SOCK_SEQPACKET, &unix.SockaddrUnix{Name: "@backlog-fixture\x00x"}, 7)
	l3 := unixListen(t, unix.SOCK_STREAM, &unix.SockaddrUnix{}, 1)
	l4 := unixListen(t, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: filepath.Join(dir, "big.sock")}, 100000)
	for _, fd := range []int{l1, l2, l3, l4} {
		defer unix.Close(fd)
	}
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := UnixRequest{States: StateMask(StateListen), Show: UnixShowName | UnixShowVFS | UnixShowRQLen | UnixShowUID}
	if err := unix.Sendto(c.fd, marshalUnixRequest(1, req), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	raw := receiveAll(t, c)
	if err := os.WriteFile("testdata/listen_unix.bin", raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// unixListen makes a UNIX listener; an empty Name autobinds (an abstract
// name the kernel picks), "@x" is the abstract name "\x00x".
func unixListen(t *testing.T, typ int, sa *unix.SockaddrUnix, backlog int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// x/sys/unix binds an empty name with the address family alone, which
	// autobinds (unix_autobind()).
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	return fd
}
