package collect

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// unixMissingAt is when a kernel last answered that it has no unix_diag
// (Unix nanoseconds; 0: never). Every such request makes the kernel run
// modprobe (sock_load_diag_module()), so it is asked again at most once
// per unixRetry, not at every sample.
var unixMissingAt atomic.Int64

const unixRetry = time.Minute

// unixDumper runs a unix_diag dump; tests stand in a kernel without one.
var unixDumper = (*sockdiag.Conn).DumpUnix

// unixListenShow is what a UNIX listener needs: its name, the file it is
// bound to, its queue and backlog, its owner's uid.
const unixListenShow = sockdiag.UnixShowName | sockdiag.UnixShowVFS | sockdiag.UnixShowRQLen | sockdiag.UnixShowUID

// dumpUnix runs a LISTEN-only unix_diag dump. A kernel without unix_diag
// (EINVAL or ENOENT from __sock_diag_cmd(): no handler for AF_UNIX) gives
// ErrNoUnixDiag, remembered for unixRetry.
func dumpUnix(conn *sockdiag.Conn, show uint32, fn func(*sockdiag.UnixSocket)) error {
	if at := unixMissingAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < unixRetry {
		return ErrNoUnixDiag
	}
	req := sockdiag.UnixRequest{States: sockdiag.StateMask(sockdiag.StateListen), Show: show}
	err := unixDumper(conn, req, func(s *sockdiag.UnixSocket) error {
		// Only stream and seqpacket sockets can listen (unix_listen()).
		if s.State == sockdiag.StateListen && (s.Type == sockdiag.UnixStream || s.Type == sockdiag.UnixSeqpacket) {
			fn(s)
		}
		return nil
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		unixMissingAt.Store(time.Now().UnixNano())
		return fmt.Errorf("%w (%w)", ErrNoUnixDiag, err)
	}
	if err == nil {
		unixMissingAt.Store(0)
	}
	return err
}

// dumpUnixListeners lists the UNIX stream and seqpacket listeners conn's
// namespace holds.
func dumpUnixListeners(conn *sockdiag.Conn, nsInode uint64) ([]snapshot.Listener, error) {
	var ls []snapshot.Listener
	err := dumpUnix(conn, unixListenShow, func(s *sockdiag.UnixSocket) {
		ls = append(ls, unixListenerOf(s, nsInode))
	})
	if err != nil {
		return nil, fmt.Errorf("listing UNIX listeners: %w", err)
	}
	return ls, nil
}

func unixListenerOf(s *sockdiag.UnixSocket, nsInode uint64) snapshot.Listener {
	var none uint32 // a UNIX connect(2) has no handshake
	l := snapshot.Listener{
		Netns:    nsInode,
		SynQueue: &none,
		Family:   snapshot.FamilyUnix,
		Path:     UnixName(s),
		Type:     snapshot.TypeStream,
		Inode:    s.Inode,
		UID:      s.UID,
	}
	if s.Type == sockdiag.UnixSeqpacket {
		l.Type = snapshot.TypeSeqpacket
	}
	if s.RQLen != nil {
		l.AcceptQueue, l.Backlog = s.RQLen.RQueue, s.RQLen.WQueue
	}
	if s.VFS != nil {
		l.VFS = &snapshot.VFS{Dev: s.VFS.Dev, Inode: s.VFS.Inode}
	}
	return l
}

// UnixName is a UNIX socket's name as ss prints it: the path, or "@" and
// the abstract name with every NUL written as "@"; "" when unbound. Bytes
// that are not UTF-8 become U+FFFD, so the name is safe in JSON and labels.
func UnixName(s *sockdiag.UnixSocket) string {
	if s.Abstract != nil {
		return strings.ToValidUTF8("@"+strings.ReplaceAll(*s.Abstract, "\x00", "@"), "\uFFFD")
	}
	return strings.ToValidUTF8(s.Path, "\uFFFD")
}
