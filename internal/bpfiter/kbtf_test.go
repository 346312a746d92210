package bpfiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// rawBTF marshals types as a recent kernel writes them (signed enums,
// whatever kernel runs the test).
func rawBTF(t testing.TB, types ...btf.Type) []byte {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, &btf.MarshalOptions{Order: binary.LittleEndian, PreventNoTypeFound: true})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestKernelTypes(t *testing.T) {
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	u8 := &btf.Int{Name: "unsigned char", Size: 1, Encoding: btf.Char}
	state := &btf.Enum{Name: "state", Size: 4, Signed: true, Values: []btf.EnumValue{{Name: "DEAD", Value: uint64(0xffffffff_fffffffb)}, {Name: "UP", Value: 1}}}
	inner := &btf.Struct{Name: "inner", Size: 8, Members: []btf.Member{
		{Name: "qlen", Type: &btf.Typedef{Name: "atomic_t", Type: u32}},
		{Name: "flags", Type: u32, Offset: 32, BitfieldSize: 3},
		{Name: "v6only", Type: u32, Offset: 35, BitfieldSize: 1},
	}}
	other := &btf.Struct{Name: "other", Size: 64} // behind a pointer only
	sock := &btf.Struct{Name: "sock", Size: 48}
	sock.Members = []btf.Member{
		{Name: "q", Type: inner},
		{Name: "peer", Type: &btf.Pointer{Target: other}, Offset: 64},
		{Name: "self", Type: &btf.Pointer{Target: sock}, Offset: 128},
		{Name: "addr", Type: &btf.Array{Index: u32, Type: u8, Nelems: 16}, Offset: 192},
		{Name: "state", Type: &btf.Volatile{Type: state}, Offset: 320},
	}
	fn := &btf.Func{Name: "bpf_iter_tcp", Type: &btf.FuncProto{Return: u32, Params: []btf.FuncParam{{Name: "sk", Type: &btf.Pointer{Target: sock}}}}, Linkage: btf.GlobalFunc}
	raw := rawBTF(t, fn, other)

	spec, ids, err := kernelTypes(raw, []string{"sock", "absent"}, []string{"bpf_iter_tcp", "bpf_iter_udp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids["bpf_iter_tcp"] == 0 {
		t.Fatalf("ids %v, want bpf_iter_tcp only", ids)
	}
	full, err := btf.LoadSpecFromReader(bytesReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := full.TypeByID(ids["bpf_iter_tcp"]); err != nil || got.TypeName() != "bpf_iter_tcp" {
		t.Errorf("id %d is %v (%v), want bpf_iter_tcp", ids["bpf_iter_tcp"], got, err)
	}
	var s *btf.Struct
	if err := spec.TypeByName("sock", &s); err != nil {
		t.Fatal(err)
	}
	if s.Size != 48 || len(s.Members) != 5 {
		t.Fatalf("sock: %v", s)
	}
	q := s.Members[0].Type.(*btf.Struct)
	if q.Name != "inner" || q.Members[1].Offset != 32 || q.Members[1].BitfieldSize != 3 || q.Members[2].Offset != 35 || q.Members[2].BitfieldSize != 1 {
		t.Errorf("embedded struct and its bitfields: %v", q.Members)
	}
	for _, i := range []int{1, 2} {
		p, ok := s.Members[i].Type.(*btf.Pointer)
		if _, void := p.Target.(*btf.Void); !ok || !void {
			t.Errorf("member %s: %v, want a void pointer", s.Members[i].Name, s.Members[i].Type)
		}
	}
	if a := s.Members[3].Type.(*btf.Array); a.Nelems != 16 || a.Type.(*btf.Int).Encoding != btf.Char {
		t.Errorf("array: %v", a)
	}
	e := s.Members[4].Type.(*btf.Volatile).Type.(*btf.Enum)
	if !e.Signed || e.Values[0].Value != uint64(0xffffffff_fffffffb) {
		t.Errorf("signed enum: %v", e)
	}
	var o *btf.Struct
	if err := spec.TypeByName("other", &o); !errors.Is(err, btf.ErrNotFound) {
		t.Errorf("a struct behind a pointer was decoded: %v, %v", o, err)
	}
}

// TestKernelTypesBad: a damaged blob is an error wrapping errBTF, never a
// panic (the loader then falls back to cilium/ebpf).
func TestKernelTypesBad(t *testing.T) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	raw := rawBTF(t, &btf.Struct{Name: "sock", Size: 4, Members: []btf.Member{{Name: "a", Type: u32}}})
	cut := func(n int) []byte { return raw[:len(raw)-n] }
	badKind := append([]byte(nil), raw...)
	badKind[24+4+3] = 31 // the first type's kind
	// A member whose typedef names itself.
	loop := rawBTF(t, &btf.Struct{Name: "sock", Size: 4, Members: []btf.Member{{Name: "a", Type: &btf.Typedef{Name: "t", Type: u32}}}})
	k, err := parseBTF(loop)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	k.walk(func(id uint32, rec []byte) error {
		if binary.LittleEndian.Uint32(rec[4:])>>24 == kindTypedef {
			binary.LittleEndian.PutUint32(loop[btfHeaderSize+off+8:], id)
		}
		off += len(rec)
		return nil
	})
	for name, b := range map[string][]byte{
		"typedef loop": loop,
		"empty":        nil,
		"magic":        append([]byte{0, 0}, raw[2:]...),
		"cut":          cut(3),
		"unknown kind": badKind,
	} {
		if _, _, err := kernelTypes(b, []string{"sock"}, nil); !errors.Is(err, errBTF) {
			t.Errorf("%s: %v, want errBTF", name, err)
		}
	}
}

func FuzzKernelTypes(f *testing.F) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	f.Add(rawBTF(f, &btf.Struct{Name: "sock", Size: 8, Members: []btf.Member{{Name: "a", Type: u32}, {Name: "b", Type: &btf.Array{Index: u32, Type: u32, Nelems: 1}, Offset: 32}}}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		kernelTypes(raw, []string{"sock"}, []string{"f"})
	})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
