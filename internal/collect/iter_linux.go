package collect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/procfd"
	"github.com/backlog-dev/backlog/internal/procnet"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// The iterators are loaded once per process (about 100 ms of CPU) and
// shared by every collection.
var iters struct {
	once sync.Once
	r    *bpfiter.Reader
	err  error
}

func iterReader() (*bpfiter.Reader, error) {
	iters.once.Do(func() { iters.r, iters.err = bpfiter.Open() })
	return iters.r, iters.err
}

// Source says which path Collect takes when BPF is not refused by
// Options.NoBPF: SourceBPF, or SourceSockDiag with the reason.
func Source() (source, why string) {
	if _, err := iterReader(); err != nil {
		return SourceSockDiag, err.Error()
	}
	return SourceBPF, ""
}

// iterListeners reads the TCP listeners of the calling thread's namespace
// with iter/tcp: both queues, drops and each SO_REUSEPORT member's own SYN
// queue in one pass that ends before the established hash.
func iterListeners(r *bpfiter.Reader, nsInode uint64) ([]snapshot.Listener, error) {
	var bls []bpfiter.Listener
	err := withInUse(func(inUse int) error {
		var err error
		bls, err = r.Listeners(inUse)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Room for the namespace's UNIX listeners, appended next: growing a
	// slice of 10,000 listeners copies 2 MB.
	ls := make([]snapshot.Listener, len(bls), len(bls)+64)
	// What the listeners' pointers point to, in three allocations rather
	// than three per listener.
	drops, syns, v6only := make([]uint64, len(bls)), make([]uint32, len(bls)), make([]bool, len(bls))
	for i, b := range bls {
		drops[i], syns[i] = uint64(b.Drops), b.SynQueue
		l := snapshot.Listener{
			Netns:         nsInode,
			Family:        snapshot.FamilyInet,
			Address:       b.Address,
			Port:          b.Port,
			Inode:         b.Inode,
			AcceptQueue:   b.AcceptQueue,
			Backlog:       b.Backlog,
			SynQueue:      &syns[i], // the member's own icsk_accept_queue.qlen
			FastOpenQueue: b.FastOpenQueue,
			Drops:         &drops[i],
		}
		if b.IPv6 {
			v6only[i] = b.V6Only
			l.Family, l.V6Only = snapshot.FamilyInet6, &v6only[i]
		}
		ls[i] = l
	}
	return ls, nil
}

// iterOwners finds owners with one iter/task_file pass, then walks
// /proc/PID/fd of the processes the iterator did not visit (this kernel's
// task iterators skip pid 1, and processes may start meanwhile). It needs
// to run in the initial PID namespace: the iterator reports global pids.
// early, when not nil, is a pass started before the listeners were read
// (see Collect). A wanted socket that neither it nor the walk finds may be
// a listener opened after it by a process it had already visited: then the
// pass runs again. (Unless the walk was refused somewhere: a socket held
// there stays unfound, and running again would not change it.)
func iterOwners(r *bpfiter.Reader, procRoot string, want map[uint32]struct{}, early func() (bpfiter.Owners, error)) (procfd.Result, error) {
	if !initialPIDNamespace(procRoot) {
		return procfd.Result{}, fmt.Errorf("not in the initial PID namespace")
	}
	pass := r.Owners
	if early != nil {
		pass = early
	}
	res, err := ownersFrom(pass, procRoot, want)
	if err == nil && early != nil && res.Denied == 0 && !holdsAll(res, want) {
		res, err = ownersFrom(r.Owners, procRoot, want)
	}
	return res, err
}

// ownersFrom completes one pass with the walk of what it did not visit.
func ownersFrom(pass func() (bpfiter.Owners, error), procRoot string, want map[uint32]struct{}) (procfd.Result, error) {
	o, err := pass()
	if err != nil {
		return procfd.Result{}, err
	}
	o = o.Keep(want)
	missed, err := procfd.Unvisited(procRoot, o.Seen)
	if err != nil {
		return procfd.Result{}, err
	}
	held := make([]procfd.Held, 0, len(o.Held))
	for pid, h := range o.Held {
		held = append(held, procfd.Held{PID: pid, FDs: h.FDs, Epolls: h.Epolls})
	}
	return procfd.WalkPIDs(procRoot, missed, want, held), nil
}

// holdsAll: every socket in want has an owner in res. One without (a
// listener opened after the pass, or one no process holds, as a kernel
// service's) costs a second pass.
func holdsAll(res procfd.Result, want map[uint32]struct{}) bool {
	for ino := range want {
		if len(res.Owners[ino]) == 0 {
			return false
		}
	}
	return true
}

// withInUse runs read (an iterator read on a thread inside the namespace)
// with the number of TCP sockets the namespace has hashed, so that a
// namespace of listeners only is read without walking the host's
// established hash after them (bpfiter.Reader.Listeners). If that number
// changed meanwhile the read may have stopped short: it runs again without
// it. Without sockstat it runs once, without it; with no TCP socket at all
// it does not run.
func withInUse(read func(inUse int) error) error {
	n, ok := tcpInUse()
	if !ok {
		return read(0)
	}
	if n == 0 {
		return nil
	}
	if err := read(n); err != nil {
		return err
	}
	if m, ok := tcpInUse(); ok && m == n {
		return nil
	}
	return read(0)
}

// tcpInUse is "inuse" of TCP and TCP6 in the calling thread's namespace:
// the TCP sockets in its listening and established hashes
// (sock_prot_inuse_add() in __inet_hash() and inet_ehash_nolisten()).
func tcpInUse() (int, bool) {
	total := 0
	for _, f := range []struct{ file, proto string }{{"sockstat", "TCP"}, {"sockstat6", "TCP6"}} {
		b, err := os.ReadFile("/proc/thread-self/net/" + f.file)
		if errors.Is(err, fs.ErrNotExist) && f.proto == "TCP6" {
			continue // no IPv6
		}
		if err != nil {
			return 0, false
		}
		n, ok := procnet.ParseSockstatInUse(b, f.proto)
		if !ok {
			return 0, false
		}
		total += n
	}
	return total, true
}

// initialPIDNamespace: /proc/self/status lists one NSpid when this
// process sees the pids the kernel's iterators report.
func initialPIDNamespace(procRoot string) bool {
	b, err := os.ReadFile(procRoot + "/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return len(strings.Fields(v)) == 1
		}
	}
	return false
}
