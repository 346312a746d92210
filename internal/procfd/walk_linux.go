package procfd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"golang.org/x/sys/unix"
)

// Walk reads every /proc/PID/fd under procRoot once and returns the owners
// of the wanted inodes. It readlinks through a directory descriptor rather
// than building paths: the walk costs a few microseconds per descriptor and
// runs once per snapshot (KERNEL.md). Processes that exit mid-walk are
// skipped; an unreadable procRoot is an error.
func Walk(procRoot string, want map[uint32]struct{}) (Result, error) {
	res := Result{Owners: make(map[uint32][]snapshot.Process)}
	if len(want) == 0 {
		return res, nil
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return res, fmt.Errorf("procfd: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return res, fmt.Errorf("procfd: listing %s: %w", procRoot, err)
	}
	buf := make([]byte, 64)
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		found, err := walkProcess(procRoot+"/"+name+"/fd", want, buf)
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			res.Denied++
			continue
		}
		if err != nil || len(found) == 0 {
			continue // exited mid-walk, or holds none we want
		}
		comm := readComm(procRoot + "/" + name + "/comm")
		for _, ino := range found {
			res.Owners[ino] = append(res.Owners[ino], snapshot.Process{PID: pid, Comm: comm})
		}
	}
	return res, nil
}

// walkProcess returns the wanted socket inodes one process holds, each once.
func walkProcess(fdDir string, want map[uint32]struct{}, buf []byte) ([]uint32, error) {
	dfd, err := unix.Open(fdDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), fdDir)
	defer f.Close()
	fds, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var found []uint32
	for _, fd := range fds {
		n, err := unix.Readlinkat(dfd, fd, buf)
		if err != nil {
			continue
		}
		ino, ok := ParseSocketLink(buf[:n])
		if !ok {
			continue
		}
		if _, ok := want[ino]; ok && !containsInode(found, ino) {
			found = append(found, ino)
		}
	}
	return found, nil
}

func containsInode(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func readComm(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
