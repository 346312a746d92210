package bpfiter

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func listenerRecord(family uint8, addr []byte) []byte {
	b := make([]byte, listenerSize)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], 4026531840)
	ne.PutUint32(b[4:], 12345)
	ne.PutUint32(b[8:], 6)   // accept queue
	ne.PutUint32(b[12:], 5)  // backlog
	ne.PutUint32(b[16:], 44) // drops
	ne.PutUint32(b[20:], 17) // SYN queue
	ne.PutUint32(b[24:], 3)  // fast-open queue
	ne.PutUint16(b[28:], 8080)
	b[30], b[31] = family, 1
	copy(b[32:], addr)
	return b
}

func TestDecodeListeners(t *testing.T) {
	v4 := listenerRecord(afInet, []byte{127, 0, 0, 1})
	v6 := listenerRecord(afInet6, netip.MustParseAddr("::1").AsSlice())
	ls, err := DecodeListeners(append(v4, v6...))
	if err != nil {
		t.Fatal(err)
	}
	want := Listener{Netns: 4026531840, Address: netip.MustParseAddr("127.0.0.1"), Port: 8080,
		Inode: 12345, AcceptQueue: 6, Backlog: 5, Drops: 44, SynQueue: 17, FastOpenQueue: 3}
	if len(ls) != 2 || ls[0] != want {
		t.Fatalf("got %+v\nwant %+v", ls, want)
	}
	want.Address, want.IPv6, want.V6Only = netip.MustParseAddr("::1"), true, true
	if ls[1] != want {
		t.Errorf("got %+v\nwant %+v", ls[1], want)
	}
	if _, err := DecodeListeners(v4[:listenerSize-1]); !errors.Is(err, ErrShort) {
		t.Errorf("short record: %v", err)
	}
	if _, err := DecodeListeners(listenerRecord(1, nil)); err == nil {
		t.Error("AF_UNIX record accepted")
	}
}

func ownerRecord(pid, inode uint32, comm string) []byte {
	b := make([]byte, ownerSize)
	binary.NativeEndian.PutUint32(b[0:], pid)
	binary.NativeEndian.PutUint32(b[4:], inode)
	binary.NativeEndian.PutUint32(b[8:], 3+inode%7) // fd
	if inode != 0 {
		binary.NativeEndian.PutUint32(b[12:], kindSocket)
	}
	copy(b[16:], comm)
	return b
}

func TestDecodeOwners(t *testing.T) {
	var b []byte
	b = append(b, ownerRecord(10, 0, "nginx")...)
	b = append(b, ownerRecord(10, 99, "nginx")...)
	b = append(b, ownerRecord(10, 99, "nginx")...) // two descriptors, one owner
	b = append(b, ownerRecord(11, 0, "a-very-long-comm")...)
	b = append(b, ownerRecord(11, 99, "a-very-long-comm")...)
	ep := ownerRecord(11, 0, "")
	binary.NativeEndian.PutUint32(ep[8:], 9)
	binary.NativeEndian.PutUint32(ep[12:], kindEpoll)
	b = append(b, ep...)
	o, err := DecodeOwners(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Seen) != 2 || len(o.Held) != 2 || !o.Holds(99) || o.Holds(98) {
		t.Fatalf("got %+v", o)
	}
	if h := o.Held[10]; h == nil || len(h.FDs) != 1 || h.FDs[3+99%7] != 99 || len(h.Epolls) != 0 {
		t.Errorf("held by 10: %+v", o.Held[10])
	}
	if h := o.Held[11]; h == nil || h.FDs[3+99%7] != 99 || len(h.Epolls) != 1 || h.Epolls[0] != 9 {
		t.Errorf("held by 11: %+v", o.Held[11])
	}
	if _, err := DecodeOwners(b[:5]); !errors.Is(err, ErrShort) {
		t.Errorf("short record: %v", err)
	}
	// A process's own record dropped when a read's buffer filled: its
	// socket record still says it was visited.
	o, err = DecodeOwners(append(ownerRecord(12, 98, "redis"), b...))
	if _, ok := o.Seen[12]; err != nil || !ok {
		t.Errorf("process 12 not seen (%v): %+v", err, o.Seen)
	}
	if !o.Holds(98) {
		t.Errorf("98 not held: %+v", o.Held)
	}
	k := o.Keep(map[uint32]struct{}{99: {}})
	if !k.Holds(99) || k.Holds(98) || len(k.Held) != 2 || k.Held[12] != nil || len(k.Seen) != 3 {
		t.Errorf("Keep(99): %+v", k)
	}
}

func FuzzDecodeListeners(f *testing.F) {
	f.Add(listenerRecord(afInet, []byte{127, 0, 0, 1}))
	f.Add(listenerRecord(afInet6, make([]byte, 16)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := DecodeListeners(b)
		if err == nil && len(ls) != len(b)/listenerSize {
			t.Errorf("%d records from %d bytes", len(ls), len(b))
		}
	})
}

func FuzzDecodeOwners(f *testing.F) {
	f.Add(ownerRecord(1, 2, "x"))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeOwners(b)
		n := len(b) / ownerSize
		if err == nil && (len(o.Seen) > n || len(o.Held) > n) {
			t.Errorf("more entries than records")
		}
	})
}

func TestDecodeQueues(t *testing.T) {
	b := make([]byte, 2*queueSize)
	binary.NativeEndian.PutUint32(b[0:], 12345)
	binary.NativeEndian.PutUint32(b[4:], 6)
	binary.NativeEndian.PutUint32(b[8:], 777)
	binary.NativeEndian.PutUint32(b[12:], 1)
	got := map[uint32]uint32{}
	if err := DecodeQueues(b, func(ino, q uint32) { got[ino] = q }); err != nil || len(got) != 2 || got[12345] != 6 || got[777] != 1 {
		t.Errorf("got %v, %v", got, err)
	}
	if err := DecodeQueues(b[:5], func(uint32, uint32) {}); !errors.Is(err, ErrShort) {
		t.Errorf("short record: %v", err)
	}
}

func FuzzDecodeQueues(f *testing.F) {
	f.Add(make([]byte, queueSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := DecodeQueues(b, func(uint32, uint32) { n++ })
		if err == nil && n != len(b)/queueSize {
			t.Errorf("%d records from %d bytes", n, len(b))
		}
	})
}
