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
