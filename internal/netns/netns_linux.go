package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ID identifies a network namespace: the device and inode of its nsfs file.
// The inode alone is what `ls -i /proc/self/ns/net` and `lsns` print.
type ID struct {
	Dev   uint64
	Inode uint64
}

// Stat returns the ID of the namespace at path.
func Stat(path string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, &OpError{Op: "stat", Path: path, Err: err}
	}
	return ID{Dev: st.Dev, Inode: st.Ino}, nil
}

// Current returns the ID of the namespace of the calling thread. Callers that
// care which thread they are on must have locked it.
func Current() (ID, error) { return Stat("/proc/thread-self/ns/net") }

// Do runs fn on a locked OS thread that has joined the namespace at path,
// then returns the thread to its own namespace. Sockets fn opens stay in the
// target namespace and may be used from any goroutine afterwards.
//
// /proc/self/net follows the main thread, not this one (proc_self is the
// thread group leader in fs/proc/base.c): inside fn read
// /proc/thread-self/net/...
//
// A namespace deleted meanwhile is ErrGone: its file is missing (ENOENT;
// ESRCH for /proc/PID/ns/net of a process that exited), or, under
// /run/netns, the plain file a removed bind mount leaves behind, which
// setns(2) would refuse with EINVAL. Once open, the descriptor keeps the
// namespace alive, so it cannot go away between the check and setns.
func Do(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return &OpError{Op: "open", Path: path, Err: fmt.Errorf("%w: %w", ErrGone, err)}
	}
	if err != nil {
		return &OpError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(target)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(target, &sfs); err == nil && sfs.Type != unix.NSFS_MAGIC {
		return &OpError{Op: "open", Path: path, Err: fmt.Errorf("%w: no longer a namespace file", ErrGone)}
	}
	return DoFd(target, path, fn)
}

// DoFd is Do for an already open namespace file descriptor; path is only
// used in errors.
func DoFd(target int, path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- &OpError{Op: "open", Path: "/proc/thread-self/ns/net", Err: err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- &OpError{Op: "setns", Path: path, Err: err}
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine
			// instead of running other code in the wrong namespace.
			errc <- errors.Join(ferr, &OpError{Op: "setns back from", Path: path, Err: err})
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// OpError is a failed namespace operation on a path.
type OpError struct {
	Op   string
	Path string
	Err  error
}

func (e *OpError) Error() string {
	msg := fmt.Sprintf("netns: %s %s: %v", e.Op, e.Path, e.Err)
	if errors.Is(e.Err, unix.EPERM) && e.Op == "setns" {
		msg += " (entering another network namespace needs root or CAP_SYS_ADMIN)"
	}
	return msg
}

func (e *OpError) Unwrap() error { return e.Err }
