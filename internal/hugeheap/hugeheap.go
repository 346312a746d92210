// Package hugeheap asks the kernel to back the Go heap of a short-lived
// process with transparent huge pages.
//
// Where transparent_hugepage is "madvise" (Debian's default), the Go runtime
// does not ask for huge pages (it stopped calling MADV_HUGEPAGE in Go 1.21.1),
// so every 4 KiB page of heap the process touches costs a page fault. On
// the virtual machines backlog is measured on a fault costs 18–28 µs, and
// the ~2,400 faults of heap in one `backlog ls` of 10,000 listeners were
// ~20 ms of its ~150 ms; with huge pages the heap takes a handful.
//
// It is meant for one-shot commands: a long-running process's scavenger
// returns memory 4 KiB at a time, which huge pages serve poorly.
package hugeheap

import "unsafe"

// arenaBytes is the runtime's heap arena on 64-bit Linux (heapArenaBytes,
// runtime/malloc.go): it maps heap inside arenas aligned to their size.
const arenaBytes = 64 << 20

// Reserve is how much heap Advise makes the runtime map before advising.
const Reserve = 32 << 20

// Advise maps Reserve bytes of heap and advises the arenas holding them
// with MADV_HUGEPAGE, so that the heap the process uses next, reused from
// that range, faults in 2 MiB at a time. The block is dropped at once; it
// is never touched, and the runtime knows fresh memory is zero, so it costs
// no page. The advice only holds for mappings that exist when it is given
// (a later mmap over the reserved rest of the arena starts without it),
// hence the block. An error (no transparent huge pages in this kernel) is
// only a missed optimisation; callers may ignore it.
func Advise() error {
	block := make([]byte, Reserve)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(block)))
	start := p &^ (arenaBytes - 1)
	end := (p + Reserve + arenaBytes - 1) &^ (arenaBytes - 1)
	// The range may reach past what the runtime mapped: madvise advises
	// the mapped parts and reports ENOMEM for the rest, which is expected.
	return madviseHuge(start, end-start)
}
