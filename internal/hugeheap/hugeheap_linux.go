package hugeheap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func madviseHuge(start, n uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, start, n, unix.MADV_HUGEPAGE)
	if e != 0 && !errors.Is(e, unix.ENOMEM) {
		return fmt.Errorf("hugeheap: madvise(MADV_HUGEPAGE): %w", e)
	}
	return nil
}
