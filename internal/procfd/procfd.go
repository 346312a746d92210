// Package procfd maps socket inodes to the processes that hold them, with
// one walk of /proc/*/fd.
package procfd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Result is what one walk found.
type Result struct {
	// Owners maps a socket inode to the processes holding it, by pid.
	Owners map[uint32][]snapshot.Process
	// Denied counts processes whose descriptors could not be read (other
	// users' processes without root, CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH;
	// a security module or hidepid even for root); Refused lists them.
	Denied  int
	Refused []Refusal
}

// Refusal is a process whose descriptors could not be read, with the error
// and its command name (readable even then).
type Refusal struct {
	PID  int
	Comm string
	Err  error
}

// ParseSocketLink returns the inode of an fd symlink target "socket:[N]".
func ParseSocketLink(b []byte) (uint32, bool) {
	const prefix = "socket:["
	if !bytes.HasPrefix(b, []byte(prefix)) || len(b) < len(prefix)+2 || b[len(b)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[len(prefix):len(b)-1]), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// ParseStat returns the state letter and parent pid of a /proc/PID/stat
// line ("pid (comm) S ppid ..."). The comm may hold spaces and ')', so
// the fields are read after the last ')' (as proc_pid_stat() writes them).
func ParseStat(b []byte) (state string, ppid int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return "", 0, false
	}
	p, err := strconv.Atoi(string(f[1]))
	if err != nil || p < 0 {
		return "", 0, false
	}
	return string(f[0]), p, true
}

// ParseEpollTargets returns the descriptors an epoll instance watches, from
// its /proc/PID/fdinfo/N text: one "tfd: N events: ..." line per watched
// descriptor (ep_show_fdinfo()).
func ParseEpollTargets(b []byte) []int {
	var fds []int
	EpollTargets(bytes.NewReader(b), make([]byte, len(b)+1), func(fd int) { fds = append(fds, fd) })
	return fds
}

// EpollTargets calls fn with each descriptor an epoll instance's fdinfo
// read from r lists, reading through buf: a server's epoll may watch tens
// of thousands of sockets, a megabyte of fdinfo not worth holding. A line
// longer than buf (fdinfo's are under 100 bytes) ends the scan.
func EpollTargets(r io.Reader, buf []byte, fn func(fd int)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, len(buf))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("tfd:"))
		if !ok {
			continue
		}
		rest = bytes.TrimLeft(rest, " \t")
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if end == 0 || end < len(rest) && rest[end] != ' ' && rest[end] != '\t' {
			continue
		}
		if n, err := strconv.Atoi(string(rest[:end])); err == nil {
			fn(n)
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return nil
	}
	return sc.Err()
}

// Roles fills in the Role of each owner of one socket: "master" when
// another owner is its child, "worker" when its parent is an owner too
// (nginx, php-fpm, gunicorn, haproxy -W and other pre-fork servers).
func Roles(ps []snapshot.Process) {
	for i := range ps {
		for j := range ps {
			switch {
			case i == j:
			case ps[j].PPID == ps[i].PID:
				ps[i].Role = snapshot.RoleMaster
			case ps[i].PPID == ps[j].PID && ps[i].Role == "":
				ps[i].Role = snapshot.RoleWorker
			}
		}
	}
}
