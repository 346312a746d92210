//go:build amd64

package bpfiter

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestRecordLayouts: the decoders' sizes are the C structs'.
func TestRecordLayouts(t *testing.T) {
	if s := unsafe.Sizeof(iterLrec{}); s != listenerSize {
		t.Errorf("struct lrec is %d bytes, DecodeListeners reads %d", s, listenerSize)
	}
	if s := unsafe.Sizeof(iterOrec{}); s != ownerSize {
		t.Errorf("struct orec is %d bytes, DecodeOwners reads %d", s, ownerSize)
	}
	if s := unsafe.Sizeof(iterQrec{}); s != queueSize {
		t.Errorf("struct qrec is %d bytes, DecodeQueues reads %d", s, queueSize)
	}
}

// open loads the iterators. On a kernel they should load on (5.9 or later,
// with BTF: every kernel of the matrix) a failure fails the test, so the
// matrix cannot skip past it.
func open(t *testing.T) *Reader {
	t.Helper()
	testutil.RequireRoot(t)
	r, err := Open()
	if err == nil {
		t.Cleanup(func() { r.Close() })
		return r
	}
	var u unix.Utsname
	unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	major, minor := kernelVersion(release)
	if _, statErr := os.Stat(btfPath); statErr == nil && (major > 5 || major == 5 && minor >= 9) {
		t.Fatalf("Linux %s with BTF: the iterators must load: %v", release, err)
	}
	t.Skipf("Linux %s: %v", release, err)
	return nil
}

func kernelVersion(release string) (major, minor int) {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) >= 2 {
		major, _ = strconv.Atoi(f[0])
		minor, _ = strconv.Atoi(f[1])
	}
	return major, minor
}

// TestIteratorsRead: in a namespace of listeners only, the read that ends
// at the last socket the namespace counts (inUse) returns every listener,
// the same as the read that looks past them, and the queues program sees
// them all and passes on the one with a queue.
func TestIteratorsRead(t *testing.T) {
	r := open(t)
	ns := labtest.Namespace(t, "bl-bpfiter")
	var ports []uint16
	var last *lab.Listener
	for range 50 {
		last = labtest.Listen(t, ns, "127.0.0.1:0", 8)
		ports = append(ports, last.Port)
	}
	labtest.Dial(t, ns, netip.AddrPortFrom(last.Addr, last.Port), 2)
	var all, stopped []Listener
	var queued map[uint32]uint32
	var counted int
	err := netns.Do(ns.Path, func() error {
		var err error
		if all, err = r.Listeners(0); err != nil {
			return err
		}
		// Stopping at the 50th socket, before the connections' four.
		if stopped, err = r.Listeners(50); err != nil {
			return err
		}
		queued = map[uint32]uint32{}
		counted, err = r.Queues(0, func(ino, q uint32) { queued[ino] = q })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := func(ls []Listener) []uint16 {
		var ps []uint16
		for _, l := range ls {
			ps = append(ps, l.Port)
		}
		slices.Sort(ps)
		return ps
	}
	slices.Sort(ports)
	if !slices.Equal(got(all), ports) || !slices.Equal(got(stopped), ports) {
		t.Errorf("ports read %v and, stopping at the 50th socket, %v; want %v", got(all), got(stopped), ports)
	}
	if counted != 50 || len(queued) != 1 {
		t.Errorf("queues: %d listeners, queued %v; want 50 and one queue", counted, queued)
	}
	for _, l := range all {
		if l.Port == last.Port && (queued[l.Inode] != l.AcceptQueue || l.AcceptQueue == 0) {
			t.Errorf("queue of the listener with clients: %d, listeners read %d", queued[l.Inode], l.AcceptQueue)
		}
	}
}

// TestIteratorsStopAtLast: in a namespace with listeners and nothing else
// the read ends at the last listener (the count sockstat gives), and still
// returns it.
func TestIteratorsStopAtLast(t *testing.T) {
	r := open(t)
	ns := labtest.Namespace(t, "bl-bpfiter")
	var ports []uint16
	for range 20 {
		ports = append(ports, labtest.Listen(t, ns, "127.0.0.1:0", 8).Port)
	}
	slices.Sort(ports)
	for _, inUse := range []int{20, 0} {
		var ls []Listener
		var n int
		err := netns.Do(ns.Path, func() error {
			var err error
			if ls, err = r.Listeners(inUse); err != nil {
				return err
			}
			n, err = r.Queues(inUse, func(uint32, uint32) {})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []uint16
		for _, l := range ls {
			got = append(got, l.Port)
		}
		slices.Sort(got)
		if !slices.Equal(got, ports) || n != 20 {
			t.Errorf("inUse %d: ports %v (want %v), queues saw %d listeners (want 20)", inUse, got, ports, n)
		}
	}
}

// BenchmarkOpen times loading the iterators: the fixed cost one-shot `ls`
// pays (kernel BTF for CO-RE, the verifier), and loading without the queues
// program that only samplers use.
func BenchmarkOpen(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		r, err := Open()
		if err != nil {
			b.Skip(err)
		}
		r.Close()
	}
}
