package bpfiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// The kernel's BTF (/sys/kernel/btf/vmlinux, 5-6 MB) describes some
// 150,000 types. cilium/ebpf decodes it whole to load a program: an index
// of every name, then every type reachable from the ones a program uses,
// and through their pointers that is most of the kernel: 50-100 ms of CPU,
// paid by every `backlog ls`. The iterators need far less: the BTF id of
// their attach point (bpf_iter_tcp, bpf_iter_task_file) and, for their CO-RE
// relocations, the layout of a few structs. A CO-RE field access walks
// members embedded by value only and never looks behind a pointer (only
// the kinds of two pointers are compared, coreAreMembersCompatible()), so
// kernelTypes decodes the wanted structs with what they embed and turns
// every pointer into a void pointer.

// BTF kinds (include/uapi/linux/btf.h).
const (
	kindInt       = 1
	kindPtr       = 2
	kindArray     = 3
	kindStruct    = 4
	kindUnion     = 5
	kindEnum      = 6
	kindFwd       = 7
	kindTypedef   = 8
	kindVolatile  = 9
	kindConst     = 10
	kindRestrict  = 11
	kindFunc      = 12
	kindFuncProto = 13
	kindVar       = 14
	kindDatasec   = 15
	kindFloat     = 16
	kindDeclTag   = 17
	kindTypeTag   = 18
	kindEnum64    = 19
)

const (
	btfMagic      = 0xeB9F
	btfHeaderSize = 24
	btfTypeSize   = 12 // struct btf_type: name_off, info, size/type
)

// errBTF wraps what the kernel's BTF did not let kernelTypes decode; the
// loader then leaves the work to cilium/ebpf.
var errBTF = errors.New("bpfiter: kernel BTF")

// kernelBTF is a raw BTF blob with the offset of every markEvery-th
// type's record: all of them would be 600 KB of fresh memory, 150 page
// faults, to find the few thousand types decoded.
type kernelBTF struct {
	types, strings []byte
	marks          []uint32 // marks[i]: the record of type id i*markEvery+1
	count          int      // types
}

const markEvery = 32

// kernelTypes decodes, from the raw BTF raw, the structs and unions named
// in structs (with everything they embed; pointers become void pointers)
// into a spec for CO-RE relocations, and finds the ids of the functions
// named in funcs. A name missing from the BTF is simply not in the result.
func kernelTypes(raw []byte, structs, funcs []string) (*btf.Spec, map[string]btf.TypeID, error) {
	k, err := parseBTF(raw)
	if err != nil {
		return nil, nil, err
	}
	wantStruct := make(map[string]bool, len(structs))
	for _, s := range structs {
		wantStruct[s] = true
	}
	wantFunc := make(map[string]bool, len(funcs))
	for _, f := range funcs {
		wantFunc[f] = true
	}
	// Most named types are functions, and all the functions wanted share a
	// prefix (bpf_iter_): testing it first spares a look-up a function.
	prefix := ""
	for i, f := range funcs {
		if i == 0 {
			prefix = f
		}
		for !strings.HasPrefix(f, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	var roots []uint32
	ids := make(map[string]btf.TypeID)
	err = k.walk(func(id uint32, rec []byte) error {
		kind := binary.LittleEndian.Uint32(rec[4:]) >> 24 & 0x1f
		if kind != kindStruct && kind != kindUnion && kind != kindFunc {
			return nil
		}
		nameOff := binary.LittleEndian.Uint32(rec)
		if kind == kindFunc && (len(funcs) == 0 || uint64(nameOff) < uint64(len(k.strings)) && !bytes.HasPrefix(k.strings[nameOff:], []byte(prefix))) {
			return nil
		}
		name, err := k.name(nameOff)
		if err != nil {
			return err
		}
		switch {
		case kind == kindFunc && wantFunc[string(name)]:
			if _, dup := ids[string(name)]; dup {
				return fmt.Errorf("%w: two functions named %s", errBTF, name)
			}
			ids[string(name)] = btf.TypeID(id)
		case kind != kindFunc && wantStruct[string(name)]:
			roots = append(roots, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	d := decoder{k: k, done: make(map[uint32]btf.Type)}
	types := make([]btf.Type, 0, len(roots))
	for _, id := range roots {
		t, err := d.decode(id)
		if err != nil {
			return nil, nil, err
		}
		types = append(types, t)
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBTF, err)
	}
	spec, err := b.Spec()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBTF, err)
	}
	return spec, ids, nil
}

// parseBTF checks the header and finds the type and string sections. The
// kernel writes its BTF in the machine's byte order; this package builds
// for amd64 only (little endian).
func parseBTF(raw []byte) (*kernelBTF, error) {
	le := binary.LittleEndian
	if len(raw) < btfHeaderSize || le.Uint16(raw) != btfMagic {
		return nil, fmt.Errorf("%w: no little-endian BTF header", errBTF)
	}
	hdrLen := le.Uint32(raw[4:])
	typeOff, typeLen := le.Uint32(raw[8:]), le.Uint32(raw[12:])
	strOff, strLen := le.Uint32(raw[16:]), le.Uint32(raw[20:])
	body := raw[min(uint64(hdrLen), uint64(len(raw))):]
	if uint64(hdrLen) < btfHeaderSize || uint64(typeOff)+uint64(typeLen) > uint64(len(body)) || uint64(strOff)+uint64(strLen) > uint64(len(body)) {
		return nil, fmt.Errorf("%w: sections past the end (%d bytes)", errBTF, len(raw))
	}
	return &kernelBTF{types: body[typeOff : typeOff+typeLen], strings: body[strOff : strOff+strLen]}, nil
}

// walk visits every type record in order, checking its length, and marks
// where every markEvery-th starts (for record).
func (k *kernelBTF) walk(visit func(id uint32, rec []byte) error) error {
	k.marks, k.count = k.marks[:0], 0
	for off := 0; off < len(k.types); {
		rec, err := recordAt(k.types, off)
		if err != nil {
			return err
		}
		if k.count%markEvery == 0 {
			k.marks = append(k.marks, uint32(off))
		}
		k.count++
		if err := visit(uint32(k.count), rec); err != nil {
			return err
		}
		off += len(rec)
	}
	return nil
}

// recordAt is the whole type record at off.
func recordAt(types []byte, off int) ([]byte, error) {
	if len(types)-off < btfTypeSize {
		return nil, fmt.Errorf("%w: type record cut at byte %d", errBTF, off)
	}
	info := binary.LittleEndian.Uint32(types[off+4:])
	n, err := extraSize(info>>24&0x1f, int(info&0xffff))
	if err != nil {
		return nil, err
	}
	if len(types)-off-btfTypeSize < n {
		return nil, fmt.Errorf("%w: type record cut at byte %d", errBTF, off)
	}
	return types[off : off+btfTypeSize+n], nil
}

// record is type id's record, found from the last mark before it (walk
// first).
func (k *kernelBTF) record(id uint32) ([]byte, error) {
	if id == 0 || uint64(id) > uint64(k.count) {
		return nil, fmt.Errorf("%w: type id %d past the last (%d)", errBTF, id, k.count)
	}
	i := int(id - 1)
	off := int(k.marks[i/markEvery])
	for range i % markEvery {
		rec, err := recordAt(k.types, off)
		if err != nil {
			return nil, err
		}
		off += len(rec)
	}
	return recordAt(k.types, off)
}

// extraSize is the size of what follows a struct btf_type of this kind
// and vlen (btf_type_size() in tools/lib/bpf/btf.c).
func extraSize(kind uint32, vlen int) (int, error) {
	switch kind {
	case kindPtr, kindFwd, kindTypedef, kindVolatile, kindConst, kindRestrict, kindFunc, kindFloat, kindTypeTag:
		return 0, nil
	case kindInt, kindVar, kindDeclTag:
		return 4, nil
	case kindArray:
		return 12, nil
	case kindStruct, kindUnion, kindDatasec, kindEnum64:
		return 12 * vlen, nil
	case kindEnum, kindFuncProto:
		return 8 * vlen, nil
	}
	return 0, fmt.Errorf("%w: unknown type kind %d", errBTF, kind)
}

// name is the NUL-terminated string at off in the string section.
func (k *kernelBTF) name(off uint32) ([]byte, error) {
	if uint64(off) >= uint64(len(k.strings)) {
		return nil, fmt.Errorf("%w: name offset %d past the strings", errBTF, off)
	}
	s := k.strings[off:]
	i := bytes.IndexByte(s, 0)
	if i < 0 {
		return nil, fmt.Errorf("%w: name at %d not terminated", errBTF, off)
	}
	return s[:i], nil
}

// decoder turns type records into cilium/ebpf's types, each id once.
type decoder struct {
	k     *kernelBTF
	done  map[uint32]btf.Type
	depth int
}

// maxDepth bounds the nesting of embedded types and qualifiers; the
// kernel's own BTF nests a dozen deep. Only a damaged blob, whose types
// contain themselves, reaches it.
const maxDepth = 256

// voidPointer stands for every pointer: CO-RE compares only the kinds of
// two pointers, and the types behind them would pull in the whole kernel.
func voidPointer() btf.Type { return &btf.Pointer{Target: (*btf.Void)(nil)} }

func (d *decoder) str(off uint32) (string, error) {
	b, err := d.k.name(off)
	return string(b), err
}

// decode returns type id. By value, types form no cycles (a struct cannot
// contain itself), and pointers are cut: the recursion ends, and is
// bounded for a blob where it would not.
func (d *decoder) decode(id uint32) (btf.Type, error) {
	if id == 0 {
		return (*btf.Void)(nil), nil
	}
	if t, ok := d.done[id]; ok {
		return t, nil
	}
	if d.depth++; d.depth > maxDepth {
		return nil, fmt.Errorf("%w: type %d contains itself", errBTF, id)
	}
	defer func() { d.depth-- }()
	le := binary.LittleEndian
	rec, err := d.k.record(id)
	if err != nil {
		return nil, err
	}
	nameOff, info, sizeOrType := le.Uint32(rec), le.Uint32(rec[4:]), le.Uint32(rec[8:])
	kind, vlen, kflag := info>>24&0x1f, int(info&0xffff), info>>31 == 1
	extra := rec[btfTypeSize:]
	name, err := d.str(nameOff)
	if err != nil {
		return nil, err
	}
	var t btf.Type
	switch kind {
	case kindInt:
		enc := le.Uint32(extra)
		t = &btf.Int{Name: name, Size: sizeOrType, Encoding: btf.IntEncoding(enc >> 24 & 0xf)}
	case kindPtr:
		t = voidPointer()
	case kindArray:
		elem, err := d.decode(le.Uint32(extra))
		if err != nil {
			return nil, err
		}
		index, err := d.decode(le.Uint32(extra[4:]))
		if err != nil {
			return nil, err
		}
		t = &btf.Array{Type: elem, Index: index, Nelems: le.Uint32(extra[8:])}
	case kindStruct, kindUnion:
		members := make([]btf.Member, vlen)
		for i := range members {
			m := extra[12*i:]
			mname, err := d.str(le.Uint32(m))
			if err != nil {
				return nil, err
			}
			mtype := le.Uint32(m[4:])
			if err := d.legacyBitfield(mtype, kflag); err != nil {
				return nil, err
			}
			typ, err := d.decode(mtype)
			if err != nil {
				return nil, err
			}
			off := le.Uint32(m[8:])
			members[i] = btf.Member{Name: mname, Type: typ, Offset: btf.Bits(off)}
			if kflag { // bitfield size in the top 8 bits (BTF_MEMBER_BITFIELD_SIZE)
				members[i].Offset, members[i].BitfieldSize = btf.Bits(off&0xffffff), btf.Bits(off>>24)
			}
		}
		if kind == kindStruct {
			t = &btf.Struct{Name: name, Size: sizeOrType, Members: members}
		} else {
			t = &btf.Union{Name: name, Size: sizeOrType, Members: members}
		}
	case kindEnum, kindEnum64:
		step := 8
		if kind == kindEnum64 {
			step = 12
		}
		values := make([]btf.EnumValue, vlen)
		for i := range values {
			v := extra[step*i:]
			vname, err := d.str(le.Uint32(v))
			if err != nil {
				return nil, err
			}
			val := uint64(le.Uint32(v[4:]))
			switch {
			case kind == kindEnum64:
				val |= uint64(le.Uint32(v[8:])) << 32
			case kflag: // signed: cilium/ebpf keeps the sign in 64 bits
				val = uint64(int64(int32(val)))
			}
			values[i] = btf.EnumValue{Name: vname, Value: val}
		}
		t = &btf.Enum{Name: name, Size: sizeOrType, Signed: kflag, Values: values}
	case kindFwd:
		kind := btf.FwdStruct
		if kflag {
			kind = btf.FwdUnion
		}
		t = &btf.Fwd{Name: name, Kind: kind}
	case kindFloat:
		t = &btf.Float{Name: name, Size: sizeOrType}
	case kindTypedef, kindVolatile, kindConst, kindRestrict, kindTypeTag:
		target, err := d.decode(sizeOrType)
		if err != nil {
			return nil, err
		}
		switch kind {
		case kindTypedef:
			t = &btf.Typedef{Name: name, Type: target}
		case kindVolatile:
			t = &btf.Volatile{Type: target}
		case kindConst:
			t = &btf.Const{Type: target}
		case kindRestrict:
			t = &btf.Restrict{Type: target}
		default:
			t = &btf.TypeTag{Value: name, Type: target}
		}
	default:
		// Functions, variables and sections are never embedded in a
		// struct; a function prototype is reached through pointers only.
		return nil, fmt.Errorf("%w: type %d of kind %d inside a struct", errBTF, id, kind)
	}
	d.done[id] = t
	return t, nil
}

// legacyBitfield refuses a bitfield written the old way (a struct without
// kind_flag whose member's int has a bit offset or fewer bits than its
// size): cilium/ebpf moves those into the member, which this decoder does
// not. The kernel's BTF (pahole) sets kind_flag on every struct with
// bitfields.
func (d *decoder) legacyBitfield(id uint32, kflag bool) error {
	if kflag || id == 0 {
		return nil
	}
	rec, err := d.k.record(id)
	if err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(rec[4:])>>24&0x1f != kindInt {
		return nil
	}
	enc, size := binary.LittleEndian.Uint32(rec[btfTypeSize:]), binary.LittleEndian.Uint32(rec[8:])
	if bits, off := enc&0xff, enc>>16&0xff; off != 0 || bits != 8*size {
		return fmt.Errorf("%w: legacy bitfield (int %d)", errBTF, id)
	}
	return nil
}
