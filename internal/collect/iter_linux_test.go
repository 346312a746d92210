package collect

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/procfd"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

func requireIter(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := iterReader(); err != nil {
		t.Skipf("BPF iterators do not load here: %v", err)
	}
}

// collectBoth takes a sock_diag snapshot, an iterator one, and a second
// sock_diag one of the namespaces; ok when the two sock_diag reads agree,
// so nothing moved while the iterator read.
func collectBoth(t *testing.T, nss ...*lab.Namespace) (diag, iter *snapshot.Snapshot, ok bool) {
	t.Helper()
	var ts []Target
	for _, ns := range nss {
		ts = append(ts, Target{Path: ns.Path, Name: ns.Name})
	}
	get := func(noBPF bool) *snapshot.Snapshot {
		s, err := Collect(context.Background(), Options{Targets: ts, NoBPF: noBPF})
		if err != nil {
			t.Fatal(err)
		}
		want := SourceBPF
		if noBPF {
			want = SourceSockDiag
		}
		if s.Source != want {
			t.Fatalf("source %q, want %q (warnings %q)", s.Source, want, s.Warnings)
		}
		return s
	}
	diag, iter = get(true), get(false)
	again := get(true)
	return diag, iter, rows(diag) == rows(again)
}

func rows(s *snapshot.Snapshot) string {
	var out string
	for _, l := range tcpOnly(s) {
		out += row(l) + fmt.Sprintf(" syn=%d tfo=%d\n", l.SynQueueLen(), l.FastOpenQueue)
	}
	return out
}

func tcpOnly(s *snapshot.Snapshot) []snapshot.Listener {
	ls := slices.DeleteFunc(slices.Clone(s.Listeners), func(l snapshot.Listener) bool { return l.IsUnix() })
	slices.SortFunc(ls, func(a, b snapshot.Listener) int { return int(a.Inode) - int(b.Inode) })
	return ls
}

// row is what both paths must agree on for one listener. The SYN queue of
// a SO_REUSEPORT group is compared per port: sock_diag cannot tell the
// members apart and counts all on one.
func row(l snapshot.Listener) string {
	v6only := "-"
	if l.V6Only != nil {
		v6only = strconv.FormatBool(*l.V6Only)
	}
	drops := "-"
	if l.Drops != nil {
		drops = strconv.FormatUint(*l.Drops, 10)
	}
	// The state of this test process, which holds the listeners, is
	// whatever its main thread did while another read /proc (R or S).
	ps := slices.Clone(l.Processes)
	for i := range ps {
		if ps[i].PID == os.Getpid() {
			ps[i].State = ""
		}
	}
	return fmt.Sprintf("%s %s %d inode=%d accept=%d backlog=%d drops=%s v6only=%s owners=%v",
		l.Family, l.Address, l.Port, l.Inode, l.AcceptQueue, l.Backlog, drops, v6only, ps)
}

func synByPort(ls []snapshot.Listener) map[uint16][2]uint32 {
	m := make(map[uint16][2]uint32)
	for _, l := range ls {
		v := m[l.Port]
		if l.SynQueue == nil && l.GroupSynQueue != nil {
			v[0] = *l.GroupSynQueue // sock_diag: each member carries the group's
		} else {
			v[0] += l.SynQueueLen()
		}
		v[1] += l.FastOpenQueue
		m[l.Port] = v
	}
	return m
}

// agree waits until a sock_diag read, an iterator read and a second
// sock_diag read line up, then checks the paths gave the same numbers.
func agree(t *testing.T, nss ...*lab.Namespace) []snapshot.Listener {
	t.Helper()
	for range 30 {
		diag, iter, ok := collectBoth(t, nss...)
		if !ok {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		d, i := tcpOnly(diag), tcpOnly(iter)
		if len(d) != len(i) {
			t.Fatalf("sock_diag saw %d listeners, the iterator %d:\n%v\n%v", len(d), len(i), d, i)
		}
		for k := range d {
			if a, b := row(d[k]), row(i[k]); a != b {
				t.Errorf("paths differ:\n sock_diag %s\n bpf_iter  %s", a, b)
			}
		}
		if a, b := synByPort(d), synByPort(i); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("SYN and fast-open queues per port: sock_diag %v, bpf_iter %v", a, b)
		}
		return i
	}
	t.Fatal("the listeners never held still long enough to compare the paths")
	return nil
}

// listenRaw opens a listener inside ns with SO_REUSEPORT and a TCP Fast
// Open queue when asked; closed at cleanup.
func listenRaw(t *testing.T, ns *lab.Namespace, addr netip.AddrPort, backlog int, reuseport bool, tfo int) uint16 {
	t.Helper()
	var port uint16
	err := ns.Do(func() error {
		family := unix.AF_INET
		var sa unix.Sockaddr
		if addr.Addr().Is6() {
			family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
		} else {
			sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if reuseport {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return err
			}
		}
		if tfo > 0 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, tfo); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return err
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			port = uint16(a.Port)
		case *unix.SockaddrInet6:
			port = uint16(a.Port)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// halfOpen returns a server and a client namespace joined by a veth pair;
// the client drops its own bare ACKs, so handshakes stay half-open.
func halfOpen(t *testing.T) (server, client *lab.Namespace) {
	server, client = newNS(t), newNS(t)
	if err := lab.Veth(server, client, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if err := client.DropBareACKs(); err != nil {
		t.Fatal(err)
	}
	return server, client
}

var serverIP = netip.MustParseAddr("192.0.2.1")

// TestIteratorAgreesWithSockDiag: the BPF iterators and sock_diag + /proc
// give the same listeners, queues, drops and owners on lab states, and the
// iterator's SYN queue is what ss counts.
func TestIteratorAgreesWithSockDiag(t *testing.T) {
	requireIter(t)
	t.Run("overflow", func(t *testing.T) {
		ns := newNS(t)
		l := listen(t, ns, "127.0.0.1:0", 5)
		dial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), 20)
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := only(t, collectNS(t, ns, l.Port)); got.AcceptQueue != 6 || *got.Drops == 0 {
				return fmt.Errorf("accept queue %d drops %d, want 6 and some", got.AcceptQueue, *got.Drops)
			}
			return nil
		})
		ls := agree(t, ns)
		if len(ls) != 1 || ls[0].AcceptQueue != 6 || ls[0].Backlog != 5 || len(ls[0].Processes) != 1 {
			t.Errorf("iterator: %+v", ls)
		}
	})
	for _, cookies := range []string{"0", "1"} {
		t.Run("synflood/syncookies="+cookies, func(t *testing.T) {
			server, client := halfOpen(t)
			if err := server.SetSysctl("net.ipv4.tcp_syncookies", cookies); err != nil {
				t.Fatal(err)
			}
			l := listen(t, server, "0.0.0.0:0", 16)
			dial(t, client, netip.AddrPortFrom(serverIP, l.Port), 50)
			// 17 here; 16 where the queue is full at the backlog
			// (lab.SynQueueFullAtBacklog), fewer with cookies on 5.10.
			n := settledSS(t, server, l.Port)
			ls := agree(t, server)
			if len(ls) != 1 || int(ls[0].SynQueueLen()) != n {
				t.Errorf("iterator: %+v, want syn_queue %d as ss counts", ls, n)
			}
		})
	}
	t.Run("reuseport", func(t *testing.T) {
		server, client := halfOpen(t)
		if err := server.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
			t.Fatal(err)
		}
		port := listenRaw(t, server, netip.MustParseAddrPort("0.0.0.0:0"), 64, true, 0)
		for range 2 {
			listenRaw(t, server, netip.AddrPortFrom(netip.IPv4Unspecified(), port), 64, true, 0)
		}
		dial(t, client, netip.AddrPortFrom(serverIP, port), 60)
		waitSS(t, server, port, 60)
		ls := agree(t, server)
		var sum uint32
		members := 0
		for _, l := range ls {
			sum += l.SynQueueLen()
			if l.SynQueueLen() > 0 {
				members++
			}
		}
		t.Logf("SYN queues of the members: %d, %d, %d", ls[0].SynQueueLen(), ls[1].SynQueueLen(), ls[2].SynQueueLen())
		if len(ls) != 3 || sum != 60 || members < 2 {
			t.Errorf("iterator: %d members, SYN queues summing to %d over %d of them; want 3, 60, spread", len(ls), sum, members)
		}
	})
	t.Run("fastopen", func(t *testing.T) {
		server, client := halfOpen(t)
		// Server on without cookies (TFO_SERVER_ENABLE|TFO_SERVER_COOKIE_NOT_REQD),
		// client on without cookies (TFO_CLIENT_ENABLE|TFO_CLIENT_NO_COOKIE).
		if err := server.SetSysctl("net.ipv4.tcp_fastopen", strconv.Itoa(0x202)); err != nil {
			t.Fatal(err)
		}
		if err := client.SetSysctl("net.ipv4.tcp_fastopen", strconv.Itoa(0x5)); err != nil {
			t.Fatal(err)
		}
		port := listenRaw(t, server, netip.MustParseAddrPort("0.0.0.0:0"), 64, false, 100)
		const n = 20
		sendFastOpen(t, client, netip.AddrPortFrom(serverIP, port), n)
		testutil.Eventually(t, 5*time.Second, func() error {
			got := only(t, collectNS(t, server, port))
			if got.FastOpenQueue != n || got.AcceptQueue != n || got.SynQueueLen() != 0 {
				return fmt.Errorf("fast-open queue %d, accept queue %d, SYN queue %d; want %d, %d, 0", got.FastOpenQueue, got.AcceptQueue, got.SynQueueLen(), n, n)
			}
			return nil
		})
		ls := agree(t, server)
		if len(ls) != 1 || ls[0].FastOpenQueue != n || ls[0].SynQueueLen() != 0 {
			t.Errorf("iterator: %+v", ls)
		}
	})
	t.Run("dual-stack", func(t *testing.T) {
		server, client := halfOpen(t)
		if err := server.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
			t.Fatal(err)
		}
		dual := listen(t, server, "[::]:0", 8)
		listenRaw(t, server, netip.MustParseAddrPort("[::1]:0"), 4, false, 0)
		dial(t, client, netip.AddrPortFrom(serverIP, dual.Port), 20)
		settledSS(t, server, dual.Port)
		ls := agree(t, server)
		if len(ls) != 2 {
			t.Fatalf("iterator: %+v", ls)
		}
	})
}

// settledSS waits until ss counts the same non-zero number of SYN-RECV
// requests on port three times in a row, half a second apart, and returns
// it: the SYN queue a flood filled, whatever this kernel's limit is.
func settledSS(t *testing.T, ns *lab.Namespace, port uint16) int {
	t.Helper()
	filter := []string{"sport", "=", ":" + strconv.Itoa(int(port))}
	last, same := -1, 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		n := testutil.SSCount(t, ns.Name, "syn-recv", filter...)
		if n == last && n > 0 {
			same++
		} else {
			last, same = n, 0
		}
		if same == 2 {
			return n
		}
	}
	t.Fatalf("ss SYN-RECV count on port %d did not settle (last %d)", port, last)
	return 0
}

func waitSS(t *testing.T, ns *lab.Namespace, port uint16, want int) {
	t.Helper()
	filter := []string{"sport", "=", ":" + strconv.Itoa(int(port))}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := testutil.SSCount(t, ns.Name, "syn-recv", filter...); n != want {
			return fmt.Errorf("ss counts %d SYN-RECV, want %d", n, want)
		}
		return nil
	})
}

// sendFastOpen opens n clients in ns that send a SYN with data
// (MSG_FASTOPEN); closed at cleanup.
func sendFastOpen(t *testing.T, ns *lab.Namespace, to netip.AddrPort, n int) {
	t.Helper()
	err := ns.Do(func() error {
		sa := &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Sendto(fd, []byte("hello"), unix.MSG_FASTOPEN, sa); err != nil && err != unix.EINPROGRESS {
				return fmt.Errorf("sendto MSG_FASTOPEN: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIteratorOwnersEqualWalk: the owners one iter/task_file pass finds
// (with the walk of what it missed) are the readlink walk's, for a
// listener inherited by hundreds of processes and every listener of the
// host.
func TestIteratorOwnersEqualWalk(t *testing.T) {
	requireIter(t)
	f, ino := loopbackListener(t)
	const n = 300
	var cmds []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
	for range n {
		c := exec.Command("sleep", "60")
		c.ExtraFiles = []*os.File{f}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	host, err := Collect(context.Background(), Options{NoOwners: true, NoBPF: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]struct{}{ino: {}}
	for _, hl := range host.Listeners {
		want[hl.Inode] = struct{}{}
	}
	r, _ := iterReader()
	got, err := iterOwners(r, "/proc", want, nil)
	if err != nil {
		t.Fatal(err)
	}
	walked, err := procfd.Walk("/proc", want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Owners[ino]) != n+1 {
		t.Errorf("iterator found %d owners of the inherited listener, want %d", len(got.Owners[ino]), n+1)
	}
	// State is left out: a process just started may run between the reads.
	id := func(ps []snapshot.Process) string {
		var out string
		for _, p := range ps {
			out += fmt.Sprintf("{%d %s ppid=%d %s serving=%v} ", p.PID, p.Comm, p.PPID, p.Role, p.Serving)
		}
		return out
	}
	for ino := range want {
		if a, b := id(got.Owners[ino]), id(walked.Owners[ino]); a != b {
			t.Errorf("inode %d: iterator %s, walk %s", ino, a, b)
		}
	}
}

// TestIteratorOwnersEarlyPass: a pass taken before a listener opened (as
// Collect starts one while the namespaces are read) is not trusted for
// it: the pass runs again and finds its owner. Where the walk of what the
// iterator skipped is refused somewhere (pid 1 on the CI host), a refused
// process might hold it: its owner is then unknown (none found, and
// Denied > 0, which ls shows as unknown rather than as no owner).
func TestIteratorOwnersEarlyPass(t *testing.T) {
	requireIter(t)
	r, _ := iterReader()
	o, err := r.Owners()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	early := func() (bpfiter.Owners, error) { calls++; return o, nil }
	_, ino := loopbackListener(t)
	if o.Holds(ino) {
		t.Fatal("the early pass already holds a listener opened after it")
	}
	got, err := iterOwners(r, "/proc", map[uint32]struct{}{ino: {}}, early)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("early pass used %d times, want 1", calls)
	}
	ps := got.Owners[ino]
	if got.Denied > 0 && len(ps) == 0 {
		t.Logf("walk refused for %d processes: the owner stays unknown", got.Denied)
		return
	}
	if len(ps) != 1 || ps[0].PID != os.Getpid() {
		t.Errorf("owners of the new listener: %+v, want this process (%d)", ps, os.Getpid())
	}
}

// loopbackListener listens on 127.0.0.1 for the test's length and returns
// the listening socket as a file (a descriptor children can inherit) and
// its inode.
func loopbackListener(t *testing.T) (*os.File, uint32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, uint32(st.Ino)
}
