package hugeheap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// vmFlags returns the VmFlags of the mapping holding addr, from
// /proc/self/smaps.
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if in {
			if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
				return strings.Fields(rest)
			}
		}
	}
	t.Fatalf("no mapping holds %#x in /proc/self/smaps", addr)
	return nil
}

// TestAdvise: heap allocated after Advise, of sizes the runtime serves
// from spans and as large objects, lies in mappings the kernel marks for
// huge pages ("hg"); allocated before it on a fresh heap, it would not.
func TestAdvise(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("this kernel has no transparent huge pages: %v", err)
	}
	if err := Advise(); errors.Is(err, ErrNoHugePages) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{64, 4 << 10, 1 << 20, 8 << 20} {
		b := make([]byte, size)
		b[0] = 1 // the page exists
		addr := uintptr(unsafe.Pointer(&b[0]))
		flags := vmFlags(t, addr)
		found := false
		for _, f := range flags {
			found = found || f == "hg"
		}
		if !found {
			t.Errorf("%d bytes at %#x: mapping flags %v, want hg (MADV_HUGEPAGE)", size, addr, flags)
		}
	}
}
