// Package hugeheap asks the kernel to back the Go heap of a short-lived
// process with transparent huge pages.
//
// Where transparent_hugepage is "madvise" (Debian's default), the Go
// runtime does not ask for huge pages (it stopped marking heap
// MADV_HUGEPAGE in Go 1.21.1), so every 4 KiB page of heap the process
// touches costs a page fault. On the virtual machines backlog is measured
// on a fault costs 18–28 µs, and the ~2,400 faults of heap in one
// `backlog ls` of 10,000 listeners were ~25 ms of its ~160 ms; in huge
// pages the heap takes a handful.
//
// The advice has a known cost (golang/go#61718): with defrag "madvise" a
// fault in an advised range that finds no free huge page reclaims and
// compacts memory first, which can stall. So Advise only advises when
// the buddy allocator has free blocks of a huge page or more for the whole
// reserve (/proc/buddyinfo), and it is meant for one-shot commands: a
// long-running process's scavenger returns memory 4 KiB at a time, which
// huge pages serve poorly.
package hugeheap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"
)

// arenaBytes is the runtime's heap arena on 64-bit Linux (heapArenaBytes,
// runtime/malloc.go): it maps heap inside arenas aligned to their size.
const arenaBytes = 64 << 20

// Reserve is how much heap Advise makes the runtime map before advising.
const Reserve = 32 << 20

// hugeOrder is the buddy order of a 2 MiB huge page of 4 KiB pages
// (x86-64); hugePage its size.
const (
	hugeOrder = 9
	hugePage  = 4096 << hugeOrder
)

// minFree is how many free huge pages the buddy allocator must hold for
// Advise to advise: twice what the reserve could take.
const minFree = 2 * Reserve / hugePage

// ErrNoHugePages: the kernel has too few free huge pages at hand, and
// faults in an advised heap could wait for compaction; nothing was advised.
var ErrNoHugePages = errors.New("hugeheap: too few free huge pages; heap left as it is")

// Advise maps Reserve bytes of heap and advises the arenas holding them
// with MADV_HUGEPAGE, so that the heap the process uses next, reused from
// that range, faults in 2 MiB at a time. The block is never touched (the
// runtime knows fresh memory is zero, so it costs no page) and is freed by
// a collection before Advise returns: heap allocated while it was still
// live would grow into a mapping made after the advice, which the advice
// does not cover. An error is only a missed optimisation.
func Advise() error {
	b, err := os.ReadFile("/proc/buddyinfo")
	if err != nil {
		return fmt.Errorf("hugeheap: %w", err)
	}
	free, err := freeHugePages(b)
	if err != nil {
		return err
	}
	if free < minFree {
		return ErrNoHugePages
	}
	block := make([]byte, Reserve)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(block)))
	start := p &^ (arenaBytes - 1)
	end := (p + Reserve + arenaBytes - 1) &^ (arenaBytes - 1)
	// The range may reach past what the runtime mapped: madvise advises
	// the mapped parts and reports ENOMEM for the rest, which is expected.
	err = madviseHuge(start, end-start)
	runtime.KeepAlive(block)
	// 3-10 ms here, a fresh process's first collection. ls collects its
	// growing heap several times anyway: in turn, 15 rounds at 10,000
	// listeners, it took 113 ms with this collection and 111 without.
	runtime.GC()
	return err
}

// freeHugePages counts the free 2 MiB blocks in /proc/buddyinfo: each
// line ("Node 0, zone Normal" and the free blocks of order 0, 1, ...)
// gives 2^(o-9) of them per free block of order o >= 9.
func freeHugePages(buddyinfo []byte) (int, error) {
	total := 0
	for line := range bytes.Lines(buddyinfo) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 || string(f[0]) != "Node" || string(f[2]) != "zone" {
			return 0, fmt.Errorf("hugeheap: /proc/buddyinfo: unexpected line %q", bytes.TrimSpace(line))
		}
		for o, s := range f[4:] {
			n, err := strconv.Atoi(string(s))
			if err != nil || n < 0 {
				return 0, fmt.Errorf("hugeheap: /proc/buddyinfo: count %q of order %d", s, o)
			}
			if o >= hugeOrder && o-hugeOrder < 20 {
				total += n << (o - hugeOrder)
			}
		}
	}
	return total, nil
}
