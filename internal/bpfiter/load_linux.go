//go:build amd64

package bpfiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// loadLean loads the iterators as cilium/ebpf's LoadAndAssign would, without
// cilium/ebpf decoding the whole kernel BTF (see kbtf.go): cilium/ebpf
// makes the global variables' map, kernelTypes gives the CO-RE relocations
// their targets and the attach points their ids, and BPF_PROG_LOAD is
// called here. The returned collection holds that map; close it after the
// programs.
func loadLean(objs *iterObjects) (*ebpf.Collection, error) {
	spec, err := loadIter()
	if err != nil {
		return nil, err
	}
	kernel, ids, err := leanKernelTypes(spec)
	if err != nil {
		return nil, err
	}
	progs := spec.Programs
	spec.Programs = nil
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, err
	}
	if err := coll.Assign(&objs.iterVariables); err != nil {
		coll.Close()
		return nil, err
	}
	load := func(name string) (*ebpf.Program, error) {
		ps := progs[name]
		if ps == nil {
			return nil, fmt.Errorf("bpfiter: no program %s in the object", name)
		}
		id, ok := ids["bpf_iter_"+ps.AttachTo]
		if !ok {
			return nil, fmt.Errorf("%w: the kernel has no bpf_iter_%s", ErrNotSupported, ps.AttachTo)
		}
		p, err := loadProgram(ps, kernel, id, coll.Maps)
		if err != nil {
			return nil, fmt.Errorf("program %s: %w", name, err)
		}
		return p, nil
	}
	if objs.Listeners, err = load(iterProgListeners); err == nil {
		if objs.Owners, err = load(iterProgOwners); err != nil {
			// Before Linux 5.11 there is no bpf_sock_from_file().
			objs.OwnersCompat, err = load(iterProgOwnersCompat)
		}
	}
	if err == nil {
		objs.Queues, err = load(iterProgQueues)
	}
	if err != nil {
		coll.Close()
		return nil, err
	}
	return coll, nil
}

// leanKernelTypes is what loadLean relocates spec's programs against: the
// kernel's structs and unions that spec's BTF names, and the ids of the
// iterators its programs attach to.
func leanKernelTypes(spec *ebpf.CollectionSpec) (*btf.Spec, map[string]btf.TypeID, error) {
	structs, ok := relocationRoots(spec)
	if !ok {
		structs = structs[:0]
		for typ, err := range spec.Types.All() {
			if err != nil {
				return nil, nil, err
			}
			switch typ.(type) {
			case *btf.Struct, *btf.Union:
				if n := typ.TypeName(); n != "" {
					structs = append(structs, n)
				}
			}
		}
	}
	var funcs []string
	for _, p := range spec.Programs {
		funcs = append(funcs, "bpf_iter_"+p.AttachTo)
	}
	raw, done, err := kernelBTFBytes()
	if err != nil {
		return nil, nil, err
	}
	defer done()
	return kernelTypes(raw, structs, funcs)
}

// relocationRoots names the types the programs' CO-RE relocations start
// from: a relocation looks for its type by name in the kernel's BTF, and
// walks its members from there. cilium/ebpf exports no accessor for that
// type but names its local BTF id in String() ("local_id=N"); ok is false
// when it did not, and the caller takes every struct of the object's BTF
// (a few hundred instead of a dozen, ~5 ms more).
func relocationRoots(spec *ebpf.CollectionSpec) (names []string, ok bool) {
	seen := make(map[string]bool)
	for _, p := range spec.Programs {
		for it := p.Instructions.Iterate(); it.Next(); {
			r := btf.CORERelocationMetadata(it.Ins)
			if r == nil {
				continue
			}
			s := r.String()
			i := strings.LastIndex(s, "local_id=")
			if i < 0 {
				return nil, false
			}
			id, err := strconv.ParseUint(strings.TrimSuffix(s[i+len("local_id="):], ")"), 10, 32)
			if err != nil {
				return nil, false
			}
			typ, err := spec.Types.TypeByID(btf.TypeID(id))
			if err != nil {
				return nil, false
			}
			typ = btf.UnderlyingType(typ)
			switch typ.(type) {
			case *btf.Struct, *btf.Union:
			default:
				return nil, false
			}
			if n := typ.TypeName(); n != "" && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names, len(names) > 0
}

// kernelBTFBytes maps the kernel's BTF (Linux 6.16+ lets it be mapped)
// or reads it: sysfs hands it out a page per read(2), ~1,300 calls.
// Call done when finished with the bytes.
func kernelBTFBytes() (raw []byte, done func(), err error) {
	f, err := os.Open(btfPath)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if raw, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE); err == nil {
		return raw, func() { unix.Munmap(raw) }, nil
	}
	raw, err = os.ReadFile(btfPath)
	return raw, func() {}, err
}

// loadProgram relocates ps against kernel, points its map loads at maps
// and loads it to attach at the iterator with BTF id attachID.
func loadProgram(ps *ebpf.ProgramSpec, kernel *btf.Spec, attachID btf.TypeID, maps map[string]*ebpf.Map) (*ebpf.Program, error) {
	insns := ps.Instructions
	var relos []*btf.CORERelocation
	var at []*asm.Instruction
	for it := insns.Iterate(); it.Next(); {
		if it.Ins.IsFunctionReference() {
			return nil, errors.New("bpf-to-bpf calls are left to cilium/ebpf")
		}
		if r := btf.CORERelocationMetadata(it.Ins); r != nil {
			relos, at = append(relos, r), append(at, it.Ins)
		}
		if ref := it.Ins.Reference(); ref != "" && it.Ins.IsLoadFromMap() {
			m := maps[ref]
			if m == nil {
				return nil, fmt.Errorf("no map %s", ref)
			}
			if err := it.Ins.AssociateMap(m); err != nil {
				return nil, err
			}
		}
	}
	bo := ps.ByteOrder
	if bo == nil {
		bo = binary.LittleEndian
	}
	fixups, err := btf.CORERelocate(relos, []*btf.Spec{kernel}, bo, func(btf.Type) (btf.TypeID, error) {
		return 0, errors.New("local type ids are left to cilium/ebpf")
	})
	if err != nil {
		return nil, fmt.Errorf("CO-RE: %w", err)
	}
	for i, f := range fixups {
		if err := f.Apply(at[i]); err != nil {
			return nil, fmt.Errorf("CO-RE %s: %w", relos[i], err)
		}
	}
	var code bytes.Buffer
	if err := insns.Marshal(&code, binary.LittleEndian); err != nil {
		return nil, err
	}
	fd, err := progLoad(code.Bytes(), ps.Name, ps.License, uint32(attachID))
	if err != nil {
		return nil, err
	}
	return ebpf.NewProgramFromFD(fd)
}

// progLoadAttr is union bpf_attr for BPF_PROG_LOAD up to attach_prog_fd
// (include/uapi/linux/bpf.h; every field here exists since Linux 5.5).
type progLoadAttr struct {
	progType, insnCnt          uint32
	insns, license             uint64
	logLevel, logSize          uint32
	logBuf                     uint64
	kernVersion, progFlags     uint32
	progName                   [16]byte
	progIfindex, expectedType  uint32
	progBTFFD, funcInfoRecSize uint32
	funcInfo                   uint64
	funcInfoCnt, lineInfoRec   uint32
	lineInfo                   uint64
	lineInfoCnt, attachBTFID   uint32
	attachProgFD               uint32
}

const (
	bpfProgLoad      = 5  // BPF_PROG_LOAD
	progTypeTracing  = 26 // BPF_PROG_TYPE_TRACING
	attachTraceIter  = 28 // BPF_TRACE_ITER
	verifierLogBytes = 1 << 20
)

// progLoad calls BPF_PROG_LOAD for an iterator program; on failure it
// loads again with the verifier's log and returns its last lines.
func progLoad(code []byte, name, license string, attachID uint32) (int, error) {
	lic := append([]byte(license), 0)
	attr := progLoadAttr{
		progType:     progTypeTracing,
		insnCnt:      uint32(len(code) / asm.InstructionSize),
		insns:        uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:      uint64(uintptr(unsafe.Pointer(&lic[0]))),
		expectedType: attachTraceIter,
		attachBTFID:  attachID,
	}
	copy(attr.progName[:15], name)
	fd, err := bpf(bpfProgLoad, &attr)
	runtime.KeepAlive(code)
	runtime.KeepAlive(lic)
	if err == nil {
		return fd, nil
	}
	log := make([]byte, verifierLogBytes)
	attr.logLevel, attr.logSize = 1, uint32(len(log))
	attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
	fd, err2 := bpf(bpfProgLoad, &attr)
	runtime.KeepAlive(code)
	runtime.KeepAlive(lic)
	runtime.KeepAlive(log)
	if err2 == nil {
		return fd, nil // loaded with the log on: nothing to say
	}
	lines := strings.Split(strings.TrimSpace(string(bytes.TrimRight(log, "\x00"))), "\n")
	return -1, fmt.Errorf("loading %s: %w: %s", name, err, strings.Join(lines[max(0, len(lines)-3):], "; "))
}

// bpf calls bpf(2), again when the verifier was interrupted (EAGAIN,
// a signal: bpf_check()), as cilium/ebpf does.
func bpf(cmd uintptr, attr *progLoadAttr) (int, error) {
	var errno unix.Errno
	for range 5 {
		var fd uintptr
		fd, _, errno = unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
		runtime.KeepAlive(attr)
		if errno == 0 {
			return int(fd), nil
		}
		if errno != unix.EAGAIN {
			break
		}
	}
	return -1, errno
}
