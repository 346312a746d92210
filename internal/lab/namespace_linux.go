package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/netns"
)

// runDir is where iproute2 keeps named namespaces.
const runDir = "/run/netns"

var (
	nsCounter atomic.Uint64

	runDirMu    sync.Mutex
	runDirReady bool
)

// NewNamespace creates a network namespace named prefix-PID-N, bind-mounted
// at /run/netns/NAME so `ip netns exec NAME` works, with lo up. The calling
// thread stays in its own namespace.
func NewNamespace(prefix string) (*Namespace, error) {
	if prefix == "" || strings.ContainsAny(prefix, "/\x00") || prefix == "." || prefix == ".." {
		return nil, fmt.Errorf("lab: new namespace: invalid prefix %q", prefix)
	}
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), nsCounter.Add(1))
	ns := &Namespace{Name: name, Path: filepath.Join(runDir, name)}
	if err := prepareRunDir(); err != nil {
		return nil, fmt.Errorf("lab: new namespace %s: %w", name, err)
	}
	// O_EXCL as in iproute2's netns_add: never adopt someone else's name.
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lab: new namespace %s: create mount point: %w", name, err)
	}
	unix.Close(fd)

	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: after unshare it belongs to the new
		// namespace, and the runtime discards a thread whose goroutine
		// exits locked, so no other goroutine ever runs on it.
		runtime.LockOSThread()
		errc <- ns.unshareAndMount()
	}()
	if err := <-errc; err != nil {
		return nil, errors.Join(fmt.Errorf("lab: new namespace %s: %w", name, err), ns.remove())
	}
	return ns, nil
}

// unshareAndMount runs on a locked thread that is thrown away afterwards.
func (ns *Namespace) unshareAndMount() error {
	parent, err := netns.Current()
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	// /proc/thread-self, not /proc/self: only this thread has moved.
	if err := unix.Mount("/proc/thread-self/ns/net", ns.Path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount on %s: %w", ns.Path, err)
	}
	id, err := netns.Current()
	if err != nil {
		return err
	}
	if id == parent {
		return errors.New("unshare left the thread in its namespace")
	}
	ns.id, ns.parent = id, parent
	return linkUp("lo")
}

// linkUp sets a link of the calling thread's namespace up.
func linkUp(name string) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link %s up: %w", name, err)
	}
	return nil
}

// prepareRunDir makes /run/netns a shared mount, binding it onto itself
// first if it is not a mount point, exactly as iproute2's netns_add does, so
// unmounting a namespace here also unmounts it in other mount namespaces.
func prepareRunDir() error {
	runDirMu.Lock()
	defer runDirMu.Unlock()
	if runDirReady {
		return nil
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", runDir, err)
	}
	made := false
	for {
		err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			runDirReady = true
			return nil
		}
		// EINVAL: not a mount point yet.
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("make %s a shared mount: %w", runDir, err)
		}
		if err := unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s on itself: %w", runDir, err)
		}
		made = true
	}
}

// Close unmounts and removes the namespace file, like `ip netns delete`.
// The namespace itself lives on while sockets opened in it stay open.
// Close is idempotent; it fails if the file could not be removed.
func (ns *Namespace) Close() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return nil
	}
	if err := ns.remove(); err != nil {
		return fmt.Errorf("lab: close namespace %s: %w", ns.Name, err)
	}
	ns.closed = true
	return nil
}

// remove undoes what NewNamespace did to the file system.
func (ns *Namespace) remove() error {
	var errs []error
	// MNT_DETACH as iproute2 does. EINVAL: not mounted (creation failed early).
	if err := unix.Unmount(ns.Path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", ns.Path, err))
	}
	if err := unix.Unlink(ns.Path); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("remove %s: %w", ns.Path, err))
	}
	if _, err := os.Lstat(ns.Path); err == nil {
		errs = append(errs, fmt.Errorf("%s is still there", ns.Path))
	}
	return errors.Join(errs...)
}

// Do runs fn on a locked OS thread inside the namespace. Sockets fn opens
// stay in the namespace and may be used from any goroutine afterwards.
func (ns *Namespace) Do(fn func() error) error {
	ns.mu.Lock()
	closed := ns.closed
	ns.mu.Unlock()
	if closed {
		return fmt.Errorf("lab: namespace %s: %w", ns.Name, ErrClosed)
	}
	return netns.Do(ns.Path, fn)
}

// checkInside guards writes that must never reach the host: the calling
// thread must be in this namespace, and this namespace must not be the one
// it was created from.
func (ns *Namespace) checkInside() error {
	cur, err := netns.Current()
	if err != nil {
		return err
	}
	if cur != ns.id || cur == ns.parent {
		return fmt.Errorf("thread is in namespace %d, want %d", cur.Inode, ns.id.Inode)
	}
	return nil
}
