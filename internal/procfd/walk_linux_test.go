package procfd

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWalkFindsOwnSocket(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	ino := uint32(st.Ino)
	res, err := Walk("/proc", map[uint32]struct{}{ino: {}})
	if err != nil {
		t.Fatal(err)
	}
	owners := res.Owners[ino]
	if len(owners) != 1 || owners[0].PID != os.Getpid() || owners[0].Comm == "" {
		t.Fatalf("owners of %d = %+v, want this process (%d)", ino, owners, os.Getpid())
	}
	if _, err := Walk("/nonexistent-proc", map[uint32]struct{}{1: {}}); err == nil {
		t.Error("unreadable proc root accepted")
	}
}
