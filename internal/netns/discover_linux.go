package netns

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultDirs are the directories of bind-mounted namespaces: iproute2's.
var DefaultDirs = []string{"/run/netns"}

// Discover finds every network namespace visible from procRoot (through
// /proc/*/ns/net) and in dirs (bind mounts such as /run/netns/NAME),
// de-duplicated by device and inode, sorted by inode. Processes that exit
// are skipped; those whose /proc/PID/ns/net is refused are returned in
// refused, by pid.
func Discover(procRoot string, dirs []string) (found []Found, refused []Refusal, err error) {
	byID := make(map[ID]*Found)
	add := func(id ID) *Found {
		f, ok := byID[id]
		if !ok {
			f = &Found{ID: id}
			byID[id] = f
		}
		return f
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, &OpError{Op: "list", Path: dir, Err: err}
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			id, err := Stat(p)
			if err != nil || !isNetns(p) {
				continue // a stale file whose mount is gone
			}
			f := add(id)
			if f.Mount == "" {
				f.Mount, f.Path = e.Name(), p
			}
		}
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, nil, &OpError{Op: "open", Path: procRoot, Err: err}
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, nil, &OpError{Op: "list", Path: procRoot, Err: err}
	}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		p := procRoot + "/" + name + "/ns/net"
		id, err := Stat(p)
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			refused = append(refused, Refusal{PID: pid, Err: err})
			continue
		}
		if err != nil {
			continue // exited
		}
		f := add(id)
		if f.PID == 0 || pid < f.PID {
			f.PID = pid
			if f.Mount == "" {
				f.Path = p
			}
		}
	}
	for _, f := range byID {
		found = append(found, *f)
	}
	slices.SortFunc(found, func(a, b Found) int { return int(a.ID.Inode) - int(b.ID.Inode) })
	slices.SortFunc(refused, func(a, b Refusal) int { return a.PID - b.PID })
	return found, refused, nil
}

// IsNetns reports whether path is an nsfs file of a network namespace; a
// file under /run/netns whose bind mount is gone is a plain empty file.
func IsNetns(path string) bool { return isNetns(path) }

func isNetns(path string) bool {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
		return false
	}
	l, err := os.Readlink(path)
	// A bind mount is not a symlink; /proc/PID/ns/net is, to "net:[N]".
	return err != nil || strings.HasPrefix(l, "net:")
}

// InitID returns the ID of the initial network namespace: init's, or, when
// /proc/1 is hidden from us, kthreadd's (kernel threads live in init_net),
// or, when both are (no CAP_SYS_PTRACE), this process's own if it is in
// init_net. That last test needs no privilege: net.core.netdev_max_backlog
// is registered for init_net alone (net/core/sysctl_net_core.c), and
// /proc/sys/net shows the calling thread's namespace. Without it, an
// unprivileged caller on the host would name its namespace differently
// from root.
func InitID(procRoot string) (ID, error) {
	id, err := Stat(procRoot + "/1/ns/net")
	if err == nil {
		return id, nil
	}
	if comm, cerr := os.ReadFile(procRoot + "/2/comm"); cerr == nil && strings.TrimSpace(string(comm)) == "kthreadd" {
		if id, kerr := Stat(procRoot + "/2/ns/net"); kerr == nil {
			return id, nil
		}
	}
	if own, ok := ownIfInit(procRoot); ok {
		return own, nil
	}
	return ID{}, err
}

// ownIfInit returns this process's namespace when it is init_net. Threads
// not locked by netns.Do are all in the process's namespace, so the
// sysctl test and Stat agree whichever thread runs them.
func ownIfInit(procRoot string) (ID, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, err := os.Stat(procRoot + "/sys/net/core/netdev_max_backlog"); err != nil {
		return ID{}, false
	}
	id, err := Stat(procRoot + "/thread-self/ns/net")
	return id, err == nil
}

// Own returns the ID of this process's network namespace: that of every
// thread not inside netns.Do. Not /proc/self, which follows the main
// thread, and Do may be running on it.
func Own(procRoot string) (ID, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return Stat(procRoot + "/thread-self/ns/net")
}

// MountOf returns the name of a bind mount of namespace id in dirs (the
// `ip netns` name), or "" when it has none: a namespace has one name
// however it was reached (--netns pid:N, a path, or found by a scan).
// Stat on a bind mount needs no privilege.
func MountOf(id ID, dirs []string) string {
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if got, err := Stat(p); err == nil && got == id && isNetns(p) {
				return e.Name()
			}
		}
	}
	return ""
}

// LowestPID returns the lowest pid under procRoot whose namespace is id and
// can be seen, 0 when none: the process Discover would name it by.
func LowestPID(procRoot string, id ID) int {
	d, err := os.Open(procRoot)
	if err != nil {
		return 0
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	lowest := 0
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 || lowest != 0 && pid >= lowest {
			continue
		}
		if got, err := Stat(procRoot + "/" + name + "/ns/net"); err == nil && got == id {
			lowest = pid
		}
	}
	return lowest
}
