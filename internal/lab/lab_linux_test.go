package lab

import (
	"github.com/backlog-dev/backlog/internal/testutil"

	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/netns"
)

// requireRoot skips tests that create namespaces, links and nftables rules.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth links and nftables rules")
	}
}

func newNamespace(t *testing.T, prefix string) *Namespace {
	t.Helper()
	requireRoot(t)
	ns, err := NewNamespace(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func mustListen(t *testing.T, ns *Namespace, addr string, backlog int) *Listener {
	t.Helper()
	l, err := ns.Listen(netip.MustParseAddrPort(addr), backlog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func mustDial(t *testing.T, ns *Namespace, to netip.AddrPort, n int) *Clients {
	t.Helper()
	c, err := ns.Dial(to, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// run is the oracle: a command run with `ip netns exec` (ns nil: on the host).
func run(t *testing.T, ns *Namespace, args ...string) string {
	t.Helper()
	if ns != nil {
		args = append([]string{"ip", "netns", "exec", ns.Name}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func lines(s string) []string {
	return slices.DeleteFunc(strings.Split(s, "\n"), func(l string) bool { return strings.TrimSpace(l) == "" })
}

// listenQueue returns Recv-Q (accept queue) and Send-Q (backlog) of the
// listener on port, as `ss -ltn` shows them.
func listenQueue(t *testing.T, ns *Namespace, port uint16) (recvQ, sendQ int, err error) {
	t.Helper()
	ls := lines(run(t, ns, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port)))
	if len(ls) != 1 {
		return 0, 0, fmt.Errorf("ss shows %d listeners on :%d: %q", len(ls), port, ls)
	}
	f := strings.Fields(ls[0]) // State Recv-Q Send-Q Local Peer
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("short ss line %q", ls[0])
	}
	recvQ, err1 := strconv.Atoi(f[1])
	sendQ, err2 := strconv.Atoi(f[2])
	return recvQ, sendQ, errors.Join(err1, err2)
}

func countState(t *testing.T, ns *Namespace, state, filter string) int {
	t.Helper()
	return len(lines(run(t, ns, "ss", "-Htn", "state", state, filter)))
}

func netnsNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, l := range lines(run(t, nil, "ip", "netns", "list")) {
		names = append(names, strings.Fields(l)[0])
	}
	return names
}

func TestNamespaceLifecycle(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNamespace("lab-life")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })

	if cur, _ := netns.Current(); cur != host {
		t.Fatalf("NewNamespace left the calling thread in namespace %d (host %d)", cur.Inode, host.Inode)
	}
	id, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	if id == host {
		t.Fatalf("namespace %s has the host's inode %d", ns.Name, id.Inode)
	}
	t.Logf("host netns inode %d, %s inode %d", host.Inode, ns.Name, id.Inode)
	if !slices.Contains(netnsNames(t), ns.Name) {
		t.Fatalf("ip netns list does not show %s", ns.Name)
	}
	if lo := run(t, ns, "ip", "-o", "link", "show", "lo"); !strings.Contains(lo, ",UP") {
		t.Errorf("lo is not up in %s: %s", ns.Name, lo)
	}

	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(netnsNames(t), ns.Name) {
		t.Errorf("ip netns list still shows %s after Close", ns.Name)
	}
	if _, err := os.Lstat(ns.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Close: %v, want it gone", ns.Path, err)
	}
	if err := ns.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := ns.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestSysctlStaysInNamespace(t *testing.T) {
	ns := newNamespace(t, "lab-sysctl")
	hostBefore, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.SetSysctl("net.core.somaxconn", "64"); err != nil {
		t.Fatal(err)
	}
	if got, err := ns.Sysctl("net.core.somaxconn"); err != nil || got != "64" {
		t.Errorf("Sysctl(net.core.somaxconn) = %q, %v; want 64", got, err)
	}
	if got := strings.TrimSpace(run(t, ns, "cat", "/proc/sys/net/core/somaxconn")); got != "64" {
		t.Errorf("somaxconn seen by ip netns exec = %s, want 64", got)
	}
	hostAfter, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	if string(hostAfter) != string(hostBefore) {
		t.Fatalf("host somaxconn changed from %q to %q", hostBefore, hostAfter)
	}

	// The effective backlog is min(listen backlog, somaxconn) (__sys_listen).
	l := mustListen(t, ns, "127.0.0.1:0", 1000)
	if _, sendQ, err := listenQueue(t, ns, l.Port); err != nil || sendQ != 64 {
		t.Errorf("listen(1000) with somaxconn 64: Send-Q %d, %v; want 64", sendQ, err)
	}
	if err := ns.SetSysctl("kernel.pid_max", "4194304"); err == nil {
		t.Error("SetSysctl accepted a key outside net.*")
	}
}

func TestAcceptQueueFull(t *testing.T) {
	ns := newNamespace(t, "lab-aq")
	l := mustListen(t, ns, "127.0.0.1:0", 5)
	mustDial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), 20)

	// The accept queue holds backlog+1 (sk_acceptq_is_full uses >).
	testutil.Eventually(t, 5*time.Second, func() error {
		recvQ, sendQ, err := listenQueue(t, ns, l.Port)
		if err == nil && (recvQ != 6 || sendQ != 5) {
			err = fmt.Errorf("Recv-Q %d Send-Q %d, want 6 and 5", recvQ, sendQ)
		}
		return err
	})
	time.Sleep(300 * time.Millisecond)
	recvQ, sendQ, err := listenQueue(t, ns, l.Port)
	if err != nil || recvQ != 6 || sendQ != 5 {
		t.Fatalf("after 300ms: Recv-Q %d Send-Q %d (%v), want 6 and 5", recvQ, sendQ, err)
	}
	filter := fmt.Sprintf("dport = :%d", l.Port)
	t.Logf("Recv-Q %d Send-Q %d; clients established %d, syn-sent %d", recvQ, sendQ,
		countState(t, ns, "established", filter), countState(t, ns, "syn-sent", filter))
}

// halfOpenSetup joins a client and a server namespace (syncookies off) over
// a veth pair and starts 50 clients against a backlog-16 listener.
func halfOpenSetup(t *testing.T, dropACKs bool) (srv, cli *Namespace, l *Listener, c *Clients) {
	t.Helper()
	srv = newNamespace(t, "lab-srv")
	cli = newNamespace(t, "lab-cli")
	if err := Veth(cli, srv, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		t.Fatal(err)
	}
	if dropACKs {
		if err := cli.DropBareACKs(); err != nil {
			t.Fatal(err)
		}
		if err := cli.DropBareACKs(); err != nil {
			t.Fatalf("second DropBareACKs: %v", err)
		}
	}
	l = mustListen(t, srv, "192.0.2.2:0", 16)
	c = mustDial(t, cli, netip.AddrPortFrom(l.Addr, l.Port), 50)
	return srv, cli, l, c
}

func TestSynQueueFullWithDroppedACKs(t *testing.T) {
	srv, cli, l, c := halfOpenSetup(t, true)
	sport := fmt.Sprintf("sport = :%d", l.Port)
	// inet_csk_reqsk_queue_is_full(): the SYN queue holds backlog+1, or
	// backlog on kernels without upstream 3479c7549fb1.
	limit, err := SynQueueLimit(16)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := countState(t, srv, "syn-recv", sport); n < limit {
			return fmt.Errorf("%d requests in SYN-RECV, want %d", n, limit)
		}
		return nil
	})
	time.Sleep(time.Second)
	if n := countState(t, srv, "syn-recv", sport); n != limit {
		t.Errorf("%d requests in SYN-RECV, want %d (the SYN-queue limit)", n, limit)
	}
	recvQ, sendQ, err := listenQueue(t, srv, l.Port)
	if err != nil || recvQ != 0 || sendQ != 16 {
		t.Errorf("listener Recv-Q %d Send-Q %d (%v), want 0 and 16: no final ACK may arrive", recvQ, sendQ, err)
	}
	dport := fmt.Sprintf("dport = :%d", l.Port)
	est, sent := countState(t, cli, "established", dport), countState(t, cli, "syn-sent", dport)
	if est != limit || est+sent != c.Len() {
		t.Errorf("clients: %d established, %d syn-sent; want %d and %d", est, sent, limit, c.Len()-limit)
	}
	t.Logf("server SYN-RECV %d, Recv-Q %d, Send-Q %d; clients established %d, syn-sent %d", limit, recvQ, sendQ, est, sent)
}

// The control for the test above: without the nftables rule the same
// clients complete their handshakes and fill the accept queue instead.
func TestHandshakesCompleteWithoutDropBareACKs(t *testing.T) {
	srv, _, l, _ := halfOpenSetup(t, false)
	testutil.Eventually(t, 5*time.Second, func() error {
		recvQ, _, err := listenQueue(t, srv, l.Port)
		if err == nil && recvQ != 17 {
			err = fmt.Errorf("accept queue %d, want 17", recvQ)
		}
		return err
	})
	if n := countState(t, srv, "syn-recv", fmt.Sprintf("sport = :%d", l.Port)); n != 0 {
		t.Errorf("%d requests in SYN-RECV, want 0", n)
	}
}

func TestListenNoBindUsesNamespacePortRange(t *testing.T) {
	ns := newNamespace(t, "lab-ports")
	hostRange, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.SetSysctl("net.ipv4.ip_local_port_range", "42000 42009"); err != nil {
		t.Fatal(err)
	}
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		l, err := ns.ListenNoBind(family, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		if l.Port < 42000 || l.Port > 42009 || !l.Addr.IsUnspecified() {
			t.Errorf("family %d: listening on %s:%d, want the wildcard and a port in 42000-42009", family, l.Addr, l.Port)
		}
		t.Logf("family %d: autobound to %s port %d", family, l.Addr, l.Port)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); string(after) != string(hostRange) {
		t.Fatalf("host ip_local_port_range changed from %q to %q", hostRange, after)
	}
}

func TestAcceptPeersAndClose(t *testing.T) {
	ns := newNamespace(t, "lab-accept")
	l := mustListen(t, ns, "[::]:0", 8)
	// Dual stack: a v4 client reaches the [::] listener as a v4-mapped peer.
	c := mustDial(t, ns, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.Port), 3)
	if err := l.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fds, err := l.AcceptN(3)
	for _, fd := range fds {
		defer unix.Close(fd)
	}
	if err != nil {
		t.Fatal(err)
	}
	var peers []uint16
	for _, fd := range fds {
		sa, err := unix.Getpeername(fd)
		if err != nil {
			t.Fatal(err)
		}
		addr, port, _ := addrPort(sa)
		if !addr.Is4In6() {
			t.Errorf("peer %s, want a v4-mapped address", addr)
		}
		peers = append(peers, port)
	}
	want := c.LocalPorts()
	slices.Sort(peers)
	slices.Sort(want)
	if !slices.Equal(peers, want) {
		t.Errorf("accepted peers %v, clients' local ports %v", peers, want)
	}

	if err := l.SetDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Accept past deadline: %v, want deadline exceeded", err)
	}
	if err := l.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Accept after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a pending Accept")
	}
}

// tcpCounter reads one Tcp counter of /proc/net/snmp as a process in ns sees it.
func tcpCounter(t *testing.T, ns *Namespace, name string) int {
	t.Helper()
	var header []string
	for _, l := range lines(run(t, ns, "cat", "/proc/net/snmp")) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		if i := slices.Index(header, name); i > 0 && i < len(f) {
			n, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Tcp %s in /proc/net/snmp of %s", name, ns.Name)
	return 0
}

func TestVethIPv6(t *testing.T) {
	a := newNamespace(t, "lab-v6a")
	b := newNamespace(t, "lab-v6b")
	if err := Veth(a, b, netip.MustParsePrefix("2001:db8::1/64"), netip.MustParsePrefix("2001:db8::2/64")); err != nil {
		t.Fatal(err)
	}
	l := mustListen(t, b, "[2001:db8::2]:0", 4)
	c := mustDial(t, a, netip.AddrPortFrom(l.Addr, l.Port), 1)
	if err := l.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fd, err := l.Accept()
	if err != nil {
		t.Fatalf("no connection over the v6 veth: %v", err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getpeername(fd)
	if err != nil {
		t.Fatal(err)
	}
	if addr, port, _ := addrPort(sa); addr != netip.MustParseAddr("2001:db8::1") || port != c.LocalPorts()[0] {
		t.Errorf("peer [%s]:%d, want [2001:db8::1]:%d", addr, port, c.LocalPorts()[0])
	}
	// Veth returns only once both ends transmit and know each other: the
	// first SYN must get through, not be retransmitted.
	if n := tcpCounter(t, a, "RetransSegs"); n != 0 {
		t.Errorf("client namespace retransmitted %d segments, want 0", n)
	}
}

func TestDialBounds(t *testing.T) {
	ns := newNamespace(t, "lab-bounds")
	if _, err := ns.Dial(netip.MustParseAddrPort("127.0.0.1:9"), maxClients+1); err == nil {
		t.Errorf("Dial accepted %d clients", maxClients+1)
	}
}
