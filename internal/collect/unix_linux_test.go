package collect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/sockdiag"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestUnixListeners: in a namespace this test makes, with somaxconn 300,
// UNIX listeners with backlog 1, 5, 128 and listen(100000), a full one, an
// abstract seqpacket one and an autobound one show with the queue and
// backlog the kernel holds, owned by this process, and equal to `ss -xl`.
func TestUnixListeners(t *testing.T) {
	testutil.RequireTool(t, "nsenter")
	ns := newNS(t)
	if err := ns.SetSysctl("net.core.somaxconn", "300"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := func(name string) string { return filepath.Join(dir, name) }
	b1 := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, sock("b1.sock"), 1)
	b5 := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, sock("b5.sock"), 5)
	b128 := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, sock("b128.sock"), 128)
	big := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, sock("big.sock"), 100000)
	abstract := labtest.ListenUnix(t, ns, unix.SOCK_SEQPACKET, fmt.Sprintf("@bl-collect-%d", os.Getpid()), 5)
	auto := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "", 2)

	// unix_recvq_full() refuses once the queue holds more than the backlog:
	// backlog+1 get in, the rest get EAGAIN.
	if refused := labtest.DialUnix(t, ns, b5, 10); refused != 4 {
		t.Errorf("backlog 5, 10 clients: %d refused, want 4", refused)
	}
	if refused := labtest.DialUnix(t, ns, b1, 3); refused != 1 {
		t.Errorf("backlog 1, 3 clients: %d refused, want 1", refused)
	}
	labtest.DialUnix(t, ns, abstract, 2)

	snap := collectNS(t, ns)
	want := map[uint32]struct {
		name, typ   string
		queue, back uint32
		file        bool
	}{
		b1.Inode:       {b1.Name, "stream", 2, 1, true},
		b5.Inode:       {b5.Name, "stream", 6, 5, true},
		b128.Inode:     {b128.Name, "stream", 0, 128, true},
		big.Inode:      {big.Name, "stream", 0, 300, true}, // __sys_listen() caps at somaxconn
		abstract.Inode: {abstract.Name, "seqpacket", 2, 5, false},
		auto.Inode:     {auto.Name, "stream", 0, 2, false},
	}
	got := map[uint32]snapshot.Listener{}
	for _, l := range snap.Listeners {
		if l.IsUnix() {
			got[l.Inode] = l
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d UNIX listeners, want %d: %+v", len(got), len(want), got)
	}
	for ino, w := range want {
		l, ok := got[ino]
		if !ok {
			t.Errorf("listener %s (inode %d) missing", w.name, ino)
			continue
		}
		if l.Path != w.name || l.Type != w.typ || l.AcceptQueue != w.queue || l.Backlog != w.back {
			t.Errorf("%s: path %q type %s queue %d/%d, want %s %d/%d", w.name, l.Path, l.Type, l.AcceptQueue, l.Backlog, w.typ, w.queue, w.back)
		}
		if (l.VFS != nil) != w.file || l.UID == nil || *l.UID != uint32(os.Geteuid()) || l.Address.IsValid() || l.Port != 0 || l.Drops != nil {
			t.Errorf("%s: vfs %v uid %v address %v port %d drops %v", w.name, l.VFS, l.UID, l.Address, l.Port, l.Drops)
		}
		if len(l.Processes) != 1 || l.Processes[0].PID != os.Getpid() {
			t.Errorf("%s: owners %+v, want this process", w.name, l.Processes)
		}
		if full := w.queue > w.back; l.Full() != full {
			t.Errorf("%s: Full() = %v, want %v", w.name, l.Full(), full)
		}
	}
	if b5l := got[b5.Inode]; b5l.VFS != nil {
		var st unix.Stat_t
		if err := unix.Stat(b5.Name, &st); err != nil || uint64(b5l.VFS.Inode) != st.Ino {
			t.Errorf("vfs inode %d, the socket file's is %d (%v)", b5l.VFS.Inode, st.Ino, err)
		}
	}

	// The oracle: ss reads the same unix_diag records.
	ss := testutil.SSUnixListeners(t, ns.Path)
	if len(ss) != len(want) {
		t.Errorf("ss -xl shows %d listeners, want %d: %+v", len(ss), len(want), ss)
	}
	for _, s := range ss {
		l, ok := got[s.Inode]
		if !ok {
			t.Errorf("ss shows %+v, backlog does not", s)
			continue
		}
		if s.Name != l.Path || s.RecvQ != int(l.AcceptQueue) || s.SendQ != int(l.Backlog) {
			t.Errorf("ss %s %d/%d, backlog %s %d/%d", s.Name, s.RecvQ, s.SendQ, l.Path, l.AcceptQueue, l.Backlog)
		}
	}

	// Filters: --path by name and pattern, --port leaves UNIX out.
	filtered, err := Collect(context.Background(), Options{Targets: []Target{{Path: ns.Path, Name: ns.Name}}, Paths: []string{b5.Name, "@bl-collect-*"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Listeners) != 2 {
		t.Errorf("--path %s --path @bl-collect-*: %+v", b5.Name, filtered.Listeners)
	}
	filtered, err = Collect(context.Background(), Options{Targets: []Target{{Path: ns.Path, Name: ns.Name}}, Ports: []uint16{1}, NoOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(filtered.Listeners) != 0 {
		t.Errorf("--port 1 kept %+v", filtered.Listeners)
	}
}

// TestUnixListenersMatchSS compares every UNIX listener of every namespace
// on the machine with `ss -xl` in that namespace. Other tests make and
// close sockets meanwhile, so a listener is compared only when two
// snapshots around the ss run agree on it; every listener ss shows must be
// in one of them.
func TestUnixListenersMatchSS(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "nsenter")
	// Listeners of our own, so the comparison is never empty.
	ns := newNS(t)
	dir := t.TempDir()
	mine := []*lab.UnixListener{
		labtest.ListenUnix(t, ns, unix.SOCK_STREAM, filepath.Join(dir, "full.sock"), 3),
		labtest.ListenUnix(t, ns, unix.SOCK_SEQPACKET, "", 7),
		labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "@bl-diff "+strconv.Itoa(os.Getpid()), 0),
	}
	labtest.DialUnix(t, ns, mine[0], 6)
	labtest.DialUnix(t, ns, mine[2], 2)
	r, err := Resolve([]string{"all"}, "", netns.DefaultDirs)
	if err != nil {
		t.Fatal(err)
	}
	targets := r.Targets
	compared := 0
	for _, tg := range targets {
		opts := Options{Targets: []Target{tg}, NoOwners: true}
		before, err := Collect(context.Background(), opts)
		if err != nil || before.Namespaces[0].Error != "" {
			continue // the namespace vanished
		}
		ss := testutil.SSUnixListeners(t, tg.Path)
		after, err := Collect(context.Background(), opts)
		if err != nil || after.Namespaces[0].Error != "" {
			continue
		}
		b, a := unixByInode(before), unixByInode(after)
		for _, s := range ss {
			lb, inB := b[s.Inode]
			la, inA := a[s.Inode]
			if !inB && !inA {
				t.Logf("namespace %s: %s (inode %d) came and went between the snapshots", tg.Name, s.Name, s.Inode)
				continue
			}
			if !inB || !inA || lb.AcceptQueue != la.AcceptQueue || lb.Backlog != la.Backlog {
				continue // changed meanwhile
			}
			compared++
			if s.Name != la.Path || s.RecvQ != int(la.AcceptQueue) || s.SendQ != int(la.Backlog) {
				t.Errorf("namespace %s: ss %s %d/%d, backlog %s %d/%d", tg.Name, s.Name, s.RecvQ, s.SendQ, la.Path, la.AcceptQueue, la.Backlog)
			}
			wantNetid := map[string]string{"stream": "u_str", "seqpacket": "u_seq"}[la.Type]
			if s.Netid != wantNetid {
				t.Errorf("namespace %s: %s is %s to ss, %s to backlog", tg.Name, s.Name, s.Netid, la.Type)
			}
		}
		// Listeners that both snapshots hold must be in ss too.
		seen := map[uint32]bool{}
		for _, s := range ss {
			seen[s.Inode] = true
		}
		for ino, l := range b {
			if _, still := a[ino]; still && !seen[ino] {
				t.Errorf("namespace %s: backlog shows %s (inode %d) in both snapshots, ss does not", tg.Name, l.Path, ino)
			}
		}
	}
	t.Logf("%d UNIX listeners compared with ss -xl in %d namespaces", compared, len(targets))
	if compared < len(mine) {
		t.Errorf("compared %d listeners, want at least this test's %d", compared, len(mine))
	}
}

func unixByInode(s *snapshot.Snapshot) map[uint32]snapshot.Listener {
	m := map[uint32]snapshot.Listener{}
	for _, l := range s.Listeners {
		if l.IsUnix() {
			m[l.Inode] = l
		}
	}
	return m
}

// TestNoUnixDiag: on a kernel without unix_diag (a module on Debian's
// kernels) the dump fails with ENOENT; the TCP listeners still come, one
// warning says why UNIX ones are missing, and the kernel is not asked again
// at every collection.
func TestNoUnixDiag(t *testing.T) {
	a, b := newNS(t), newNS(t)
	listen(t, a, "127.0.0.1:0", 5)
	labtest.ListenUnix(t, b, unix.SOCK_STREAM, "", 5)
	calls := 0
	unixDumper = func(*sockdiag.Conn, sockdiag.UnixRequest, func(*sockdiag.UnixSocket) error) error {
		calls++
		return &sockdiag.OpError{Op: "decode dump", Err: unix.ENOENT}
	}
	t.Cleanup(func() { unixDumper = (*sockdiag.Conn).DumpUnix; unixMissingAt.Store(0) })
	opts := Options{Targets: []Target{{Path: a.Path, Name: a.Name}, {Path: b.Path, Name: b.Name}}, NoOwners: true}
	for range 2 {
		snap, err := Collect(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Listeners) != 1 || snap.Listeners[0].IsUnix() {
			t.Errorf("listeners %+v, want the TCP one", snap.Listeners)
		}
		if len(snap.Warnings) != 1 || !UnixUnknown(snap.Warnings[0]) || !strings.Contains(snap.Warnings[0], "modprobe unix_diag") {
			t.Errorf("warnings %q, want one line about unix_diag", snap.Warnings)
		}
		for _, ns := range snap.Namespaces {
			if ns.Error != "" {
				t.Errorf("namespace %s: %s", ns.Name, ns.Error)
			}
		}
	}
	if calls > 2 {
		t.Errorf("the kernel was asked %d times in two collections of two namespaces; once it said no, wait", calls)
	}
}
