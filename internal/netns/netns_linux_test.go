package netns

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDoGone: a namespace file that is missing, or is the plain file a
// removed /run/netns bind mount leaves behind (setns(2) would say EINVAL),
// is ErrGone, and fn never runs.
func TestDoGone(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "unmounted")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), plain, "/proc/2147483647/ns/net"} {
		ran := false
		err := Do(path, func() error { ran = true; return nil })
		if !errors.Is(err, ErrGone) || ran {
			t.Errorf("%s: %v (fn ran: %v), want ErrGone", path, err, ran)
		}
	}
	// The caller's own namespace is there (setns needs CAP_SYS_ADMIN).
	if os.Geteuid() != 0 {
		return
	}
	if err := Do("/proc/thread-self/ns/net", func() error { return nil }); err != nil {
		t.Errorf("own namespace: %v", err)
	}
}
