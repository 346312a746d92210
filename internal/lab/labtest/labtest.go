// Package labtest gives tests lab namespaces, listeners and clients that
// need root (they skip without it, through testutil) and remove themselves
// when the test ends.
package labtest

import (
	"net/netip"
	"testing"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// Namespace makes a private namespace named prefix-PID-N, removed at
// cleanup; a failure to remove it fails the test.
func Namespace(t testing.TB, prefix string) *lab.Namespace {
	t.Helper()
	testutil.RequireRoot(t)
	ns, err := lab.NewNamespace(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// Listen opens a raw listener with the given backlog on addr ("127.0.0.1:0")
// inside ns, closed at cleanup.
func Listen(t testing.TB, ns *lab.Namespace, addr string, backlog int) *lab.Listener {
	t.Helper()
	l, err := ns.Listen(netip.MustParseAddrPort(addr), backlog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Dial starts n clients from ns to the listener l's address, closed at
// cleanup.
func Dial(t testing.TB, ns *lab.Namespace, to netip.AddrPort, n int) *lab.Clients {
	t.Helper()
	c, err := ns.Dial(to, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ListenUnix opens a UNIX listener of type typ (unix.SOCK_STREAM or
// unix.SOCK_SEQPACKET) on name (a path, "@abstract", or "" to autobind)
// inside ns, closed (and its file removed) at cleanup.
func ListenUnix(t testing.TB, ns *lab.Namespace, typ int, name string, backlog int) *lab.UnixListener {
	t.Helper()
	l, err := ns.ListenUnix(typ, name, backlog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// DialUnix makes n non-blocking connects to a UNIX listener from ns and
// returns how many the listener refused (EAGAIN); the others are closed at
// cleanup.
func DialUnix(t testing.TB, ns *lab.Namespace, l *lab.UnixListener, n int) (refused int) {
	t.Helper()
	c, refused, err := ns.DialUnix(l.Type, l.Name, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return refused
}
