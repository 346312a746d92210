//go:build amd64

package bpfiter

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestOpenIsLean: on every kernel of the matrix the iterators load without
// cilium/ebpf decoding the whole kernel BTF (the fallback is for kernels
// whose BTF kernelTypes cannot read).
func TestOpenIsLean(t *testing.T) {
	r := open(t)
	if !r.lean {
		_, err := loadLean(&iterObjects{})
		t.Fatalf("the iterators were loaded by cilium/ebpf's path: the lean loader said: %v", err)
	}
}

// TestLeanRelocatesAsCilium: relocated against the structs kernelTypes
// decodes, every CO-RE relocation of every program comes out as against
// the whole kernel BTF cilium/ebpf decodes, and the attach points have the
// ids cilium/ebpf finds.
func TestLeanRelocatesAsCilium(t *testing.T) {
	testutil.RequireRoot(t) // /sys/kernel/btf/vmlinux is readable by root only on some kernels
	spec, err := loadIter()
	if err != nil {
		t.Fatal(err)
	}
	full, err := btf.LoadKernelSpec()
	if errors.Is(err, btf.ErrNotSupported) {
		t.Skip("no kernel BTF")
	}
	if err != nil {
		t.Fatal(err)
	}
	lean, ids, err := leanKernelTypes(spec)
	if err != nil {
		t.Fatal(err)
	}
	noLocal := func(btf.Type) (btf.TypeID, error) { return 0, errors.New("no local type ids") }
	for name, ps := range spec.Programs {
		var fn *btf.Func
		if err := full.TypeByName("bpf_iter_"+ps.AttachTo, &fn); err != nil {
			t.Fatal(err)
		}
		want, err := full.TypeID(fn)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids["bpf_iter_"+ps.AttachTo]; got != want {
			t.Errorf("%s: bpf_iter_%s has id %d, cilium/ebpf says %d", name, ps.AttachTo, got, want)
		}
		var relos []*btf.CORERelocation
		for it := ps.Instructions.Iterate(); it.Next(); {
			if r := btf.CORERelocationMetadata(it.Ins); r != nil {
				relos = append(relos, r)
			}
		}
		if len(relos) == 0 {
			t.Fatalf("%s: no CO-RE relocations: nothing compared", name)
		}
		wantFix, err := btf.CORERelocate(relos, []*btf.Spec{full}, ps.ByteOrder, noLocal)
		if err != nil {
			t.Fatal(err)
		}
		gotFix, err := btf.CORERelocate(relos, []*btf.Spec{lean}, ps.ByteOrder, noLocal)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range relos {
			if g, w := fmt.Sprint(gotFix[i]), fmt.Sprint(wantFix[i]); g != w {
				t.Errorf("%s: %s: lean %s, cilium/ebpf %s", name, relos[i], g, w)
			}
		}
		t.Logf("%s: %d relocations equal", name, len(relos))
	}
}

// BenchmarkOpenLean is BenchmarkOpen's load alone by the lean loader.
func BenchmarkOpenLean(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		var objs iterObjects
		coll, err := loadLean(&objs)
		if err != nil {
			b.Fatal(err)
		}
		objs.Close()
		coll.Close()
	}
}

// BenchmarkLeanKernelTypes is the BTF half of the lean load.
func BenchmarkLeanKernelTypes(b *testing.B) {
	testutil.RequireRoot(b)
	spec, err := loadIter()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := leanKernelTypes(spec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRecordsCut: records cut between reads are put together; a read that
// ends inside one is ErrShort; EAGAIN ends a read without error.
func TestRecordsCut(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789ab"), 50) // 50 records of 12 bytes
	var got []byte
	err := records(iotest.OneByteReader(bytes.NewReader(data)), make([]byte, 40), 12, func(b []byte) error {
		if len(b)%12 != 0 {
			t.Errorf("fn got %d bytes", len(b))
		}
		got = append(got, b...)
		return nil
	})
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("got %d bytes (%v), want %d", len(got), err, len(data))
	}
	err = records(bytes.NewReader(data[:30]), make([]byte, 64), 12, func([]byte) error { return nil })
	if !errors.Is(err, ErrShort) {
		t.Errorf("a cut record: %v", err)
	}
	err = records(iotest.ErrReader(unix.EAGAIN), make([]byte, 64), 12, func([]byte) error { return nil })
	if err != nil {
		t.Errorf("EAGAIN: %v", err)
	}
}

// TestRelocationRoots: the roots are read from cilium/ebpf's relocations,
// not the fallback of every struct in the object.
func TestRelocationRoots(t *testing.T) {
	spec, err := loadIter()
	if err != nil {
		t.Fatal(err)
	}
	names, ok := relocationRoots(spec)
	if !ok {
		t.Fatal("no relocation roots: the lean loader decodes every struct of the object")
	}
	for _, want := range []string{"sock_common", "sock", "task_struct", "file", "socket_alloc"} {
		if !slices.Contains(names, want) {
			t.Errorf("roots %v lack %s", names, want)
		}
	}
	t.Logf("roots: %v", names)
}

// TestOwnersCompat: where bpf_sock_from_file() exists (5.11 on) owners
// loads, else owners_compat; and owners_compat, loaded beside it where
// both can, finds this process's listening sockets (TCP and UNIX) and
// its epoll instance as owners does, and not its connected socket.
func TestOwnersCompat(t *testing.T) {
	r := open(t)
	var u unix.Utsname
	unix.Uname(&u)
	major, minor := kernelVersion(unix.ByteSliceToString(u.Release[:]))
	helper := major > 5 || major == 5 && minor >= 11
	if got := r.objs.Owners != nil; got != helper || (r.objs.OwnersCompat != nil) == helper {
		t.Fatalf("Linux %d.%d: owners loaded %v, owners_compat %v; want owners %v", major, minor, got, r.objs.OwnersCompat != nil, helper)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	ux, err := net.Listen("unix", "@backlog-owners-compat-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	c, err := net.Dial("tcp", tcp.Addr().String()) // a connected socket: not an owner record
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mine := func(o Owners) (fds map[int]uint32, epolls int) {
		h := o.Held[os.Getpid()]
		if h == nil {
			return nil, 0
		}
		return h.FDs, len(h.Epolls)
	}
	o, err := r.Owners()
	if err != nil {
		t.Fatal(err)
	}
	wantFDs, wantEpolls := mine(o)
	if len(wantFDs) < 2 || wantEpolls == 0 {
		t.Fatalf("owners found %v and %d epoll instances here, want two listeners and Go's epoll", wantFDs, wantEpolls)
	}
	if !helper {
		return // owners_compat is what ran
	}
	spec, err := loadIter()
	if err != nil {
		t.Fatal(err)
	}
	var compat struct {
		iterVariables
		P *ebpf.Program `ebpf:"owners_compat"`
	}
	if err := spec.LoadAndAssign(&compat, nil); err != nil {
		t.Fatal(err)
	}
	defer compat.P.Close()
	it, err := link.AttachIter(link.IterOptions{Program: compat.P})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var d ownersDecoder
	if err := readRecords(it, make([]byte, readSize), ownerSize, d.add); err != nil {
		t.Fatal(err)
	}
	oc := d.finish()
	gotFDs, gotEpolls := mine(oc)
	if !maps.Equal(gotFDs, wantFDs) || gotEpolls != wantEpolls {
		t.Errorf("owners_compat found %v and %d epoll instances, owners %v and %d", gotFDs, gotEpolls, wantFDs, wantEpolls)
	}
}

// TestCiliumPath: the fallback that leaves loading to cilium/ebpf reads
// the same listeners and owners as the lean loader.
func TestCiliumPath(t *testing.T) {
	lean := open(t)
	full, err := attach(loadCilium)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if (lean.objs.Owners == nil) != (full.objs.Owners == nil) {
		t.Errorf("owners program: lean %v, cilium/ebpf %v", lean.objs.Owners != nil, full.objs.Owners != nil)
	}
	ns := labtest.Namespace(t, "bl-bpfiter-cilium")
	for range 20 {
		labtest.Listen(t, ns, "127.0.0.1:0", 8)
	}
	var a, b []Listener
	err = netns.Do(ns.Path, func() error {
		var err error
		if a, err = lean.Listeners(0); err != nil {
			return err
		}
		b, err = full.Listeners(0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 20 || !slices.Equal(a, b) {
		t.Errorf("lean read %d listeners, cilium/ebpf's %d; want the same 20", len(a), len(b))
	}
	oa, err := lean.Owners()
	if err != nil {
		t.Fatal(err)
	}
	ob, err := full.Owners()
	if err != nil {
		t.Fatal(err)
	}
	ha, hb := oa.Held[os.Getpid()], ob.Held[os.Getpid()]
	if ha == nil || hb == nil || !maps.Equal(ha.FDs, hb.FDs) {
		t.Errorf("this process's listening descriptors: lean %v, cilium/ebpf %v", ha, hb)
	}
}
