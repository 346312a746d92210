//go:build amd64

package trace

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab"
)

// ioUring is the least of io_uring a test needs to accept connections the
// way io_uring servers do (IORING_OP_ACCEPT, Linux 5.5+): one submission,
// then wait for its completion. Go's standard library has no io_uring;
// these are the raw system calls and the shared rings
// (include/uapi/linux/io_uring.h).
type ioUring struct {
	fd         int
	ring, sqes []byte
	p          [120]byte // struct io_uring_params
}

// Offsets in struct io_uring_params and its io_sqring_offsets (at 40) and
// io_cqring_offsets (at 80).
const (
	pSqEntries = 0
	pCqEntries = 4
	pFeatures  = 20
	sqHead     = 40
	sqTail     = 44
	sqMask     = 48
	sqArray    = 64
	cqHead     = 80
	cqTail     = 84
	cqMask     = 88
	cqCqes     = 100

	featSingleMmap  = 1 << 0
	offSqes         = 0x10000000
	opAccept        = 13
	enterGetEvents  = 1
	sqeSize, cqeLen = 64, 16
)

func newIOUring(entries uint32) (*ioUring, error) {
	u := &ioUring{}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&u.p[0])), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	u.fd = int(fd)
	ne := func(off int) int { return int(*(*uint32)(unsafe.Pointer(&u.p[off]))) }
	if ne(pFeatures)&featSingleMmap == 0 {
		u.Close()
		return nil, fmt.Errorf("io_uring without IORING_FEAT_SINGLE_MMAP (Linux < 5.4)")
	}
	size := max(ne(sqArray)+ne(pSqEntries)*4, ne(cqCqes)+ne(pCqEntries)*cqeLen)
	var err error
	if u.ring, err = unix.Mmap(u.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, fmt.Errorf("mmap io_uring rings: %w", err)
	}
	if u.sqes, err = unix.Mmap(u.fd, offSqes, ne(pSqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, fmt.Errorf("mmap io_uring sqes: %w", err)
	}
	return u, nil
}

// word is a u32 of the rings at the offset the kernel gave at setup.
func (u *ioUring) word(paramOff int) *uint32 {
	off := *(*uint32)(unsafe.Pointer(&u.p[paramOff]))
	return (*uint32)(unsafe.Pointer(&u.ring[off]))
}

// accept submits one IORING_OP_ACCEPT on lfd and returns the accepted
// descriptor.
func (u *ioUring) accept(lfd int) (int, error) {
	tail := atomic.LoadUint32(u.word(sqTail))
	idx := tail & *u.word(sqMask)
	sqe := u.sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	sqe[0] = opAccept
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(lfd)
	*(*uint32)(unsafe.Pointer(&sqe[28])) = unix.SOCK_CLOEXEC // accept_flags
	*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(lfd)       // user_data
	arrayOff := *(*uint32)(unsafe.Pointer(&u.p[sqArray]))
	*(*uint32)(unsafe.Pointer(&u.ring[arrayOff+4*idx])) = idx
	atomic.StoreUint32(u.word(sqTail), tail+1)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 1, 1, enterGetEvents, 0, 0); errno != 0 {
		return -1, fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(u.word(cqHead))
	if head == atomic.LoadUint32(u.word(cqTail)) {
		return -1, fmt.Errorf("io_uring: no completion")
	}
	cqesOff := *(*uint32)(unsafe.Pointer(&u.p[cqCqes]))
	cqe := u.ring[cqesOff+(head&*u.word(cqMask))*cqeLen:]
	res := *(*int32)(unsafe.Pointer(&cqe[8]))
	atomic.StoreUint32(u.word(cqHead), head+1)
	if res < 0 {
		return -1, fmt.Errorf("io_uring accept: %w", unix.Errno(-res))
	}
	return int(res), nil
}

func (u *ioUring) Close() {
	if u.sqes != nil {
		unix.Munmap(u.sqes)
	}
	if u.ring != nil {
		unix.Munmap(u.ring)
	}
	unix.Close(u.fd)
}

// TestIOUringAccept: connections accepted through io_uring
// (IORING_OP_ACCEPT, as io_uring servers do) are counted in the accept
// waits where fexit of inet_csk_accept loads (the kernel matrix's Debian
// kernels): as many waits as accepts. Where the kernel refuses trampolines
// the fallback sees accept(2)/accept4(2) only, and the tracer says that
// io_uring accepts are not seen instead of missing them silently.
func TestIOUringAccept(t *testing.T) {
	rec := startTracer(t, Options{NoUnix: true})
	ns, err := lab.NewNamespace("btrace-uring")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	const n = 20
	var ino uint64
	err = ns.Do(func() error {
		u, err := newIOUring(8)
		if err != nil {
			return err
		}
		defer u.Close()
		l, lino, sa, err := loopbackListener(64)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		ino = lino
		for range n {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(c)
			if err := unix.Connect(c, sa); err != nil {
				return err
			}
		}
		for range n {
			a, err := u.accept(l)
			if err != nil {
				return err
			}
			unix.Close(a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := rec.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var waits uint64
	for _, s := range stats {
		if s.Inode == ino {
			waits += s.AcceptWait.Count
		}
	}
	t.Logf("accept hook %s: %d io_uring accepts, %d accept waits", rec.AcceptHook(), n, waits)
	if rec.AcceptHook() != "fexit" {
		if l := rec.AcceptLimit(); !strings.Contains(l, "io_uring accepts are not seen") {
			t.Errorf("accept hook %s, and no word that io_uring accepts are missed: %q", rec.AcceptHook(), l)
		}
		return
	}
	if waits != n {
		t.Errorf("%d accept waits for %d io_uring accepts", waits, n)
	}
}

// TestRequestedBacklog: the trace reads the backlog a listener asked
// listen(2) for, which the kernel keeps only capped at somaxconn
// (listen(100000) → 4096, __sys_listen()). With --no-unix it still does
// where trampolines load (fentry on listen's function); where they are
// refused the value is absent, never made up.
func TestRequestedBacklog(t *testing.T) {
	for _, noUnix := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-unix=%v", noUnix), func(t *testing.T) {
			rec := startTracer(t, Options{NoUnix: noUnix})
			defer rec.stop()
			var want int64 = 100000
			if noUnix && rec.AcceptHook() != "fexit" {
				want = 0 // no trampolines: no hook on listen(2) without the system call's
			}
			requestedBacklog(t, rec, want)
		})
	}
}

func requestedBacklog(t *testing.T, rec *recorder, want int64) {
	ns, err := lab.NewNamespace("btrace-req")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var ino uint64
	var stats []ListenerStats
	err = ns.Do(func() error {
		l, lino, sa, err := loopbackListener(100000)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		ino = lino
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(c)
		if err := unix.Connect(c, sa); err != nil {
			return err
		}
		a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		unix.Close(a)
		// While the listener is open: the trace forgets a closed one.
		stats, err = rec.Stats()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Inode == ino {
			switch {
			case want == 0 && s.RequestedBacklog != nil:
				t.Errorf("requested backlog %d without a hook on listen(2), want it absent", *s.RequestedBacklog)
			case want != 0 && (s.RequestedBacklog == nil || *s.RequestedBacklog != want):
				t.Errorf("requested backlog %v, want %d", s.RequestedBacklog, want)
			}
			return
		}
	}
	t.Errorf("listener %d not in the stats: %+v", ino, stats)
}

// TestCloseMigrates: with net.ipv4.tcp_migrate_req=1 (Linux 5.14+) a
// member that closes with connections queued hands them to the member
// still listening (inet_csk_listen_stop(), reuseport_migrate_sock()): the
// close event says migrated and counts no reset, and the namespace's
// TCPMigrateReqSuccess moved by its queue.
func TestCloseMigrates(t *testing.T) {
	rec := startTracer(t, Options{NoUnix: true})
	ns, err := lab.NewNamespace("btrace-mig")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.SetSysctl("net.ipv4.tcp_migrate_req", "1"); err != nil {
		t.Skipf("no net.ipv4.tcp_migrate_req on this kernel (Linux 5.14+): %v", err)
	}
	a, err := ns.ListenReuseport(netip.MustParseAddrPort("127.0.0.1:0"), 16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ns.ListenReuseport(netip.AddrPortFrom(a.Addr, a.Port), 16)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(b.Fd, &st); err != nil {
		t.Fatal(err)
	}
	clients, err := ns.Dial(netip.AddrPortFrom(a.Addr, a.Port), 12)
	if err != nil {
		t.Fatal(err)
	}
	defer clients.Close()
	time.Sleep(200 * time.Millisecond)
	before := migrated(t, ns)
	if before < 0 {
		t.Skip("no TcpExt TCPMigrateReqSuccess on this kernel (Linux 5.14+): migration is not counted here")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	moved := migrated(t, ns) - before
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var closes []Event
	for _, e := range rec.events {
		if e.Stage == StageClose && e.Inode == st.Ino {
			closes = append(closes, e)
		}
	}
	if moved == 0 {
		if len(closes) != 0 {
			t.Errorf("nothing queued on the closing member, yet close events %+v", closes)
		}
		t.Skip("no client hashed to the closing member")
	}
	if len(closes) != 1 || !closes[0].Migrated || closes[0].Resets != 0 || int64(closes[0].AcceptQueue) != moved {
		t.Errorf("close events %+v; TCPMigrateReqSuccess moved %d", closes, moved)
	}
	t.Logf("closing member held %d, migrated %d", closes[0].AcceptQueue, moved)
}

// migrated reads TcpExt TCPMigrateReqSuccess in ns, -1 where the kernel
// has no such counter.
func migrated(t *testing.T, ns *lab.Namespace) int64 {
	t.Helper()
	var n int64 = -1
	err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := range keys {
				if keys[j] == "TCPMigrateReqSuccess" && j < len(vals) {
					n, err = strconv.ParseInt(vals[j], 10, 64)
					return err
				}
			}
		}
		return nil // not counted by this kernel: -1
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
