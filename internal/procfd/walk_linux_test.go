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

// A socket in this process's epoll set is served by it; one outside is
// held but not served. The state letter and parent come from /proc.
func TestWalkServingAndState(t *testing.T) {
	var socks [2]int
	var inos [2]uint32
	for i := range socks {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		socks[i], inos[i] = fd, uint32(st.Ino)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, socks[0], &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		t.Fatal(err)
	}
	res, err := Walk("/proc", map[uint32]struct{}{inos[0]: {}, inos[1]: {}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := res.Owners[inos[0]], res.Owners[inos[1]]
	if len(a) != 1 || len(b) != 1 || !a[0].Serving || b[0].Serving {
		t.Fatalf("owners %+v / %+v: want the polled socket served, the other not", a, b)
	}
	if a[0].State == "" || a[0].PPID != os.Getppid() || a[0].Role != "" {
		t.Errorf("owner %+v: want a state, ppid %d, no role", a[0], os.Getppid())
	}
}
