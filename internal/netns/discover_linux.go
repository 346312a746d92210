package netns

import (
	"errors"
	"os"
	"path/filepath"
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
// or cannot be inspected are skipped; denied counts the latter.
func Discover(procRoot string, dirs []string) (found []Found, denied int, err error) {
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
			return nil, 0, &OpError{Op: "list", Path: dir, Err: err}
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
		return nil, 0, &OpError{Op: "open", Path: procRoot, Err: err}
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, 0, &OpError{Op: "list", Path: procRoot, Err: err}
	}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		p := procRoot + "/" + name + "/ns/net"
		id, err := Stat(p)
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			denied++
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
	return found, denied, nil
}

// isNetns reports whether path is an nsfs file of a network namespace; a
// file under /run/netns whose bind mount is gone is a plain empty file.
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
// /proc/1 is hidden from us, kthreadd's (kernel threads live in init_net).
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
	return ID{}, err
}
