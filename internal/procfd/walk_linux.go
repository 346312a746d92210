package procfd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"golang.org/x/sys/unix"
)

// Walk reads every /proc/PID/fd under procRoot once and returns the owners
// of the wanted inodes. It readlinks through a directory descriptor rather
// than building paths: the walk costs a few microseconds per descriptor and
// runs once per snapshot. Processes that exit mid-walk are
// skipped; an unreadable procRoot is an error.
func Walk(procRoot string, want map[uint32]struct{}) (Result, error) {
	res := Result{Owners: make(map[uint32][]snapshot.Process, len(want))}
	if len(want) == 0 {
		return res, nil
	}
	names, err := listPIDs(procRoot)
	if err != nil {
		return res, err
	}
	return walk(procRoot, names, want, nil), nil
}

// Held is what a BPF iterator found in one process's descriptor table:
// the descriptors holding wanted sockets and its epoll instances.
type Held struct {
	PID    int
	FDs    map[int]uint32 // descriptor -> wanted socket inode
	Epolls []int
}

// WalkPIDs is Walk over the given processes only (those a BPF iterator did
// not visit), with the processes the iterator found holding wanted sockets
// completed as Walk completes them: command, state, parent, serving (their
// epoll sets' fdinfo) and roles.
func WalkPIDs(procRoot string, pids []int, want map[uint32]struct{}, held []Held) Result {
	names := make([]string, len(pids))
	for i, p := range pids {
		names[i] = strconv.Itoa(p)
	}
	return walk(procRoot, names, want, held)
}

// Unvisited returns the processes under procRoot that hold descriptors
// and are not in seen. A process's descriptor count is the st_size of its
// /proc/PID/fd (Linux 6.2 on); where the kernel reports 0 for every
// process, every process not in seen is returned.
func Unvisited(procRoot string, seen map[int]struct{}) ([]int, error) {
	names, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	sized := unix.Stat(procRoot+"/self/fd", &st) == nil && st.Size > 0
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		if _, ok := seen[pid]; ok {
			continue
		}
		if sized && unix.Stat(procRoot+"/"+n+"/fd", &st) == nil && st.Size == 0 {
			continue // no descriptors: nothing to miss (kernel threads)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func listPIDs(procRoot string) ([]string, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("procfd: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("procfd: listing %s: %w", procRoot, err)
	}
	return names, nil
}

func walk(procRoot string, names []string, want map[uint32]struct{}, extra []Held) Result {
	res := Result{Owners: make(map[uint32][]snapshot.Process, len(want))}
	// Readlink dominates the cost (measured: 6-7 µs a descriptor, 730 ms
	// for 116,000 descriptors of 2,000 processes); spread
	// the processes over the CPUs.
	type found struct {
		pid    int
		inodes []uint32
		denied error
		// serving holds the wanted inodes the process's epoll sets watch.
		serving map[uint32]struct{}
	}
	jobs := make(chan string)
	results := make(chan found)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for name := range jobs {
				pid, _ := strconv.Atoi(name)
				h, err := walkProcess(procRoot+"/"+name+"/fd", want, buf)
				var denied error
				if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
					denied = err
				}
				if denied != nil || err == nil && len(h.inodes) > 0 {
					var serving map[uint32]struct{}
					if len(h.inodes) > 0 && len(h.epolls) > 0 {
						serving = polled(procRoot+"/"+name+"/fdinfo/", h)
					}
					results <- found{pid: pid, inodes: h.inodes, denied: denied, serving: serving}
				}
			}
		}()
	}
	go func() {
		for _, name := range names {
			if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
				jobs <- name
			}
		}
		close(jobs)
		wg.Wait()
		for _, x := range extra {
			h := held{fds: x.FDs, epolls: x.Epolls}
			h.inodes = uniqueInodes(x.FDs)
			var serving map[uint32]struct{}
			if len(h.inodes) > 0 && len(h.epolls) > 0 {
				serving = polled(procRoot+"/"+strconv.Itoa(x.PID)+"/fdinfo/", h)
			}
			results <- found{pid: x.PID, inodes: h.inodes, serving: serving}
		}
		close(results)
	}()
	for f := range results {
		dir := procRoot + "/" + strconv.Itoa(f.pid)
		p := snapshot.Process{PID: f.pid, Comm: readComm(dir + "/comm")}
		if b, err := os.ReadFile(dir + "/stat"); err == nil {
			p.State, p.PPID, _ = ParseStat(b)
		}
		if f.denied != nil {
			res.Denied++
			res.Refused = append(res.Refused, Refusal{PID: f.pid, Comm: p.Comm, Err: f.denied})
		}
		// One allocation for the process's sockets rather than one each
		// (a server may hold thousands); a socket's second owner appends
		// past the capacity, into a slice of its own.
		own := make([]snapshot.Process, len(f.inodes))
		for i, ino := range f.inodes {
			own[i] = p
			_, own[i].Serving = f.serving[ino]
			if prev := res.Owners[ino]; prev != nil {
				res.Owners[ino] = append(prev, own[i])
			} else {
				res.Owners[ino] = own[i : i+1 : i+1]
			}
		}
	}
	slices.SortFunc(res.Refused, func(a, b Refusal) int { return a.PID - b.PID })
	for _, ps := range res.Owners {
		slices.SortFunc(ps, func(a, b snapshot.Process) int { return a.PID - b.PID })
		Roles(ps)
	}
	return res
}

// held is what one process's descriptor table shows: the wanted socket
// inodes (each once), the descriptors holding them, and its epoll
// instances.
type held struct {
	inodes []uint32
	fds    map[int]uint32 // descriptor -> wanted inode
	epolls []int
}

// polled returns the wanted inodes that one of the process's epoll sets
// watches: the sockets it waits for connections on.
func polled(fdinfoDir string, h held) map[uint32]struct{} {
	out := make(map[uint32]struct{})
	buf := make([]byte, 16<<10)
	for _, ep := range h.epolls {
		f, err := os.Open(fdinfoDir + strconv.Itoa(ep))
		if err != nil {
			continue
		}
		EpollTargets(f, buf, func(fd int) {
			if ino, ok := h.fds[fd]; ok {
				out[ino] = struct{}{}
			}
		})
		f.Close()
	}
	return out
}

// walkProcess returns the wanted socket inodes one process holds and its
// epoll descriptors, and EACCES when some of its descriptors could not be
// read (with what the readable ones held).
func walkProcess(fdDir string, want map[uint32]struct{}, buf []byte) (held, error) {
	dfd, err := unix.Open(fdDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return held{}, err
	}
	f := os.NewFile(uintptr(dfd), fdDir)
	defer f.Close()
	fds, err := f.Readdirnames(-1)
	if err != nil {
		return held{}, err
	}
	// A process with many descriptors (a busy server) is split across the
	// CPUs too, or it alone sets the wall time of the walk.
	parts := 1
	if len(fds) > 4096 {
		parts = runtime.GOMAXPROCS(0)
	}
	chunk := (len(fds) + parts - 1) / parts
	type hit struct {
		fd  int
		ino uint32
	}
	hits := make([][]hit, parts)
	epolls := make([][]int, parts)
	var denied atomic.Bool
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := min(p*chunk, len(fds)), min((p+1)*chunk, len(fds))
		b := buf
		if p > 0 {
			b = make([]byte, len(buf))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, fd := range fds[lo:hi] {
				n, err := unix.Readlinkat(dfd, fd, b)
				if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
					// The directory opened but its links are refused
					// (ptrace_may_access() in proc_fd_link()): root
					// without CAP_SYS_PTRACE.
					denied.Store(true)
				}
				if err != nil {
					continue
				}
				if ino, ok := ParseSocketLink(b[:n]); ok {
					if _, ok := want[ino]; ok {
						n, _ := strconv.Atoi(fd)
						hits[p] = append(hits[p], hit{n, ino})
					}
				} else if string(b[:n]) == "anon_inode:[eventpoll]" {
					n, _ := strconv.Atoi(fd)
					epolls[p] = append(epolls[p], n)
				}
			}
		}()
	}
	wg.Wait()
	h := held{fds: map[int]uint32{}}
	for p := range hits {
		for _, x := range hits[p] {
			h.fds[x.fd] = x.ino
		}
		h.epolls = append(h.epolls, epolls[p]...)
	}
	h.inodes = uniqueInodes(h.fds)
	if denied.Load() {
		return h, unix.EACCES
	}
	return h, nil
}

// uniqueInodes returns each inode fds holds once. A set, not a scan of a
// slice: a server holding 10,000 listeners made that quadratic (~18 ms a
// collection).
func uniqueInodes(fds map[int]uint32) []uint32 {
	out := make([]uint32, 0, len(fds))
	for _, ino := range fds {
		out = append(out, ino)
	}
	// Sorted and compacted: no set of 10,000 inodes to build.
	slices.Sort(out)
	return slices.Compact(out)
}

func readComm(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
