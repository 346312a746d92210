package collect

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
)

func listenersIn(snap *snapshot.Snapshot, inode uint64) []snapshot.Listener {
	var out []snapshot.Listener
	for _, l := range snap.Listeners {
		if l.Netns == inode {
			out = append(out, l)
		}
	}
	return out
}

func nsByName(snap *snapshot.Snapshot, name string) *snapshot.Namespace {
	for i := range snap.Namespaces {
		if snap.Namespaces[i].Name == name {
			return &snap.Namespaces[i]
		}
	}
	return nil
}

// TestAllNamespaces: two named namespaces and one held only by a process,
// each with its own listener, sysctls and name; all found in one run.
func TestAllNamespaces(t *testing.T) {
	blue, green := newNS(t), newNS(t)
	lb := listen(t, blue, "127.0.0.1:0", 5)
	lg := listen(t, green, "[::]:0", 7)
	if err := blue.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		t.Fatal(err)
	}
	if err := blue.SetSysctl("net.core.somaxconn", "111"); err != nil {
		t.Fatal(err)
	}
	if err := green.SetSysctl("net.ipv4.tcp_syncookies", "2"); err != nil {
		t.Fatal(err)
	}
	if err := green.SetSysctl("net.core.somaxconn", "222"); err != nil {
		t.Fatal(err)
	}
	pid, childPort := processNamespace(t)

	r, err := Resolve([]string{"all"}, "", netns.DefaultDirs)
	if err != nil {
		t.Fatal(err)
	}
	targets := r.Targets
	snap, err := Collect(context.Background(), Options{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, ns := range snap.Namespaces {
		if seen[ns.Inode] {
			t.Errorf("namespace %d (%s) listed twice", ns.Inode, ns.Name)
		}
		seen[ns.Inode] = true
		if ns.Error != "" {
			t.Errorf("namespace %s: %s", ns.Name, ns.Error)
		}
	}

	for _, c := range []struct {
		name      string
		port      uint16
		backlog   uint32
		somaxconn int64
		cookies   int64
	}{
		{blue.Name, lb.Port, 5, 111, 0},
		{green.Name, lg.Port, 7, 222, 2},
	} {
		ns := nsByName(snap, c.name)
		if ns == nil {
			t.Fatalf("namespace %s not found among %d", c.name, len(snap.Namespaces))
		}
		ls := listenersIn(snap, ns.Inode)
		if len(ls) != 1 || ls[0].Port != c.port || ls[0].Backlog != c.backlog {
			t.Errorf("%s: listeners %+v, want port %d backlog %d", c.name, ls, c.port, c.backlog)
		}
		if *ns.Sysctls.Somaxconn != c.somaxconn || *ns.Sysctls.TCPSyncookies != c.cookies {
			t.Errorf("%s: somaxconn %d syncookies %d, want %d %d", c.name, *ns.Sysctls.Somaxconn, *ns.Sysctls.TCPSyncookies, c.somaxconn, c.cookies)
		}
	}

	childID, err := netns.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns := snap.Namespace(childID.Inode)
	if ns == nil {
		t.Fatalf("the process-held namespace %d was not found", childID.Inode)
	}
	if want := "pid:" + strconv.Itoa(pid) + " ("; !strings.HasPrefix(ns.Name, want) {
		t.Errorf("process-held namespace named %q, want %s...)", ns.Name, want)
	}
	ls := listenersIn(snap, childID.Inode)
	if len(ls) != 1 || ls[0].Port != childPort || ls[0].Backlog != 3 || len(ls[0].Processes) != 1 || ls[0].Processes[0].PID != pid {
		t.Errorf("process-held namespace listeners %+v, want port %d backlog 3 owned by %d", ls, childPort, pid)
	}
}

// TestNamespaceVanishes: a namespace deleted between discovery and reading
// is left out, as the next listing will, not a failure (namespaces come
// and go); the others are complete.
func TestNamespaceVanishes(t *testing.T) {
	stay, gone := newNS(t), newNS(t)
	l := listen(t, stay, "127.0.0.1:0", 4)
	r, err := Resolve([]string{"all"}, "", netns.DefaultDirs)
	if err != nil {
		t.Fatal(err)
	}
	targets := r.Targets
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := Collect(context.Background(), Options{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	if g := nsByName(snap, gone.Name); g != nil {
		t.Errorf("deleted namespace still listed: %+v", g)
	}
	// Alone, it is an error that says what happened.
	for _, tg := range targets {
		if tg.Name == gone.Name {
			_, err := Collect(context.Background(), Options{Targets: []Target{tg}})
			if !errors.Is(err, ErrNoNamespace) || !errors.Is(err, netns.ErrGone) {
				t.Errorf("only the deleted namespace: %v, want it gone", err)
			}
		}
	}
	s := nsByName(snap, stay.Name)
	if s == nil || s.Error != "" || s.Counters.ListenOverflows == nil || s.Sysctls.Somaxconn == nil {
		t.Fatalf("surviving namespace incomplete: %+v", s)
	}
	if ls := listenersIn(snap, s.Inode); len(ls) != 1 || ls[0].Port != l.Port {
		t.Errorf("surviving namespace listeners %+v", ls)
	}
}

func TestResolveSpecs(t *testing.T) {
	ns := newNS(t)
	resolve := func(specs ...string) ([]Target, error) {
		r, err := Resolve(specs, "", netns.DefaultDirs)
		return r.Targets, err
	}
	for _, spec := range []string{ns.Name, ns.Path} {
		ts, err := resolve(spec)
		if err != nil || len(ts) != 1 || ts[0].Path == "" {
			t.Fatalf("Resolve(%q) = %+v, %v", spec, ts, err)
		}
		if ts[0].Name != ns.Name {
			t.Errorf("Resolve(%q) named %q, want %q", spec, ts[0].Name, ns.Name)
		}
	}
	pid, _ := processNamespace(t)
	ts, err := resolve("pid:" + strconv.Itoa(pid))
	if err != nil || len(ts) != 1 || !strings.HasPrefix(ts[0].Name, "pid:"+strconv.Itoa(pid)) {
		t.Errorf("pid spec: %+v, %v", ts, err)
	}
	if ts, err := resolve("self"); err != nil || len(ts) != 1 || ts[0].Path != "" {
		t.Errorf("self: %+v %v", ts, err)
	}
	for _, bad := range []string{"no-such-namespace", "pid:x", "pid:-1", "/nonexistent/ns", "pid:999999999", "", "/etc/passwd", "/proc/self/ns/mnt"} {
		if _, err := resolve(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("Resolve(%q): %v, want ErrBadSpec", bad, err)
		}
	}
}

// TestOneNamePerNamespace: a namespace has the name a scan of all gives
// it however it is reached: by pid:N of any process inside, by path, or
// as the caller's own (entered with setns, as `ip netns exec` does).
func TestOneNamePerNamespace(t *testing.T) {
	ns := newNS(t)
	all, err := Resolve([]string{"all"}, "", netns.DefaultDirs)
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, tg := range all.Targets {
		if tg.Path == ns.Path {
			want = tg.Name
		}
	}
	if want != ns.Name {
		t.Fatalf("scan named %s %q", ns.Path, want)
	}
	nsID, err := netns.Stat(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	// A process inside the named namespace: pid:N names it by its mount.
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }() // by pid: the one started here
	testutil.Eventually(t, 5*time.Second, func() error {
		id, err := netns.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		if err != nil || id != nsID {
			return fmt.Errorf("sleep not in %s yet", ns.Name)
		}
		return nil
	})
	specs := []string{"pid:" + strconv.Itoa(cmd.Process.Pid), fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), ns.Path, ns.Name}
	for _, spec := range specs {
		r, err := Resolve([]string{spec}, "", netns.DefaultDirs)
		if err != nil || len(r.Targets) != 1 || r.Targets[0].Name != want {
			t.Errorf("Resolve(%q) = %+v, %v; want the name %q", spec, r.Targets, err, want)
		}
	}
	// Repeated specs are joined, each namespace once.
	r, err := Resolve(specs, "", netns.DefaultDirs)
	if err != nil || len(r.Targets) != 1 {
		t.Errorf("Resolve(%q) = %+v, %v; want one target", specs, r.Targets, err)
	}
	// The caller's own namespace is named the same from inside, by
	// default and as "self", and the default is that namespace alone.
	err = netns.Do(ns.Path, func() error {
		for _, specs := range [][]string{nil, {"self"}} {
			r, err := Resolve(specs, "", netns.DefaultDirs)
			if err != nil || len(r.Targets) != 1 || r.Targets[0].Name != want {
				t.Errorf("inside, Resolve(%q) = %+v, %v; want the name %q", specs, r.Targets, err, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
