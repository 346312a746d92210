package sockdiag

import (
	"flag"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "capture fresh fixtures from the live kernel into testdata/")

// TestCaptureFixtures records the raw bytes of real dumps: an IPv4 listener
// with backlog 5 on 127.0.0.1 and an IPv6 listener with backlog 7 on [::1].
// Run with -update to refresh testdata/.
func TestCaptureFixtures(t *testing.T) {
	if !*update {
		t.Skip("fixtures are refreshed only with -update")
	}
	l4 := rawListen(t, unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, 5)
	l6 := rawListen(t, unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}, 7)
	defer unix.Close(l4)
	defer unix.Close(l6)
	for _, c := range []struct {
		family uint8
		file   string
	}{{unix.AF_INET, "testdata/listen_inet.bin"}, {unix.AF_INET6, "testdata/listen_inet6.bin"}, {unix.AF_UNSPEC, "testdata/listen_all.bin"}} {
		raw := rawDump(t, Request{Family: c.family, Protocol: unix.IPPROTO_TCP, Ext: ExtInfo | ExtSKMemInfo, States: StateMask(StateListen)})
		if err := os.WriteFile(c.file, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func rawListen(t *testing.T, family int, sa unix.Sockaddr, backlog int) int {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	return fd
}

// rawDump returns every byte the kernel sent for one dump, netlink headers
// included, concatenated across receive buffers.
func rawDump(t *testing.T, r Request) []byte {
	t.Helper()
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := unix.Sendto(c.fd, marshalRequest(1, r), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	return receiveAll(t, c)
}

// receiveAll reads the reply of the request with sequence 1 to its end.
func receiveAll(t *testing.T, c *Conn) []byte {
	t.Helper()
	st := dumpState{seq: 1}
	var all []byte
	for !st.done {
		n, _, _, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c.buf[:n]...)
		if err := st.parseBuffer(c.buf[:n], func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return all
}
