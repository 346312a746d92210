package sockdiag

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// MaxDumpAttempts bounds how often DumpConsistent restarts an interrupted dump.
const MaxDumpAttempts = 5

// Conn is a NETLINK_SOCK_DIAG socket. It belongs to the network namespace
// of the thread that opened it, and can be used from any goroutine after,
// but by one at a time.
type Conn struct {
	fd  int
	seq uint32
	buf []byte
}

// Dial opens a sock_diag socket in the calling thread's network namespace.
func Dial() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, &OpError{Op: "socket", Err: err}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, &OpError{Op: "bind", Err: err}
	}
	// 32 KiB is the most one netlink dump skb carries (netlink_dump()).
	return &Conn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// Close releases the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// Dump runs one dump and calls fn for every socket, streaming: memory does
// not grow with the number of sockets. It returns ErrDumpInterrupted (after
// reading the whole dump) if the kernel flagged it inconsistent.
func (c *Conn) Dump(r Request, fn func(*Socket) error) error {
	c.seq++
	return c.dump(marshalRequest(c.seq, r), func(body []byte) error {
		s, err := UnmarshalSocket(body)
		if err != nil {
			return err
		}
		return fn(&s)
	})
}

// DumpUnix runs one unix_diag dump and calls fn for every UNIX socket,
// streaming. A kernel without unix_diag (CONFIG_UNIX_DIAG=n, or the module
// not loadable) answers ENOENT; errors.Is finds it in the error.
func (c *Conn) DumpUnix(r UnixRequest, fn func(*UnixSocket) error) error {
	c.seq++
	return c.dump(marshalUnixRequest(c.seq, r), func(body []byte) error {
		s, err := UnmarshalUnixSocket(body)
		if err != nil {
			return err
		}
		return fn(&s)
	})
}

// dump sends msg (sequence c.seq) and passes each reply body to decode,
// which returns the first error of the decoding or of the caller.
func (c *Conn) dump(msg []byte, decode func(body []byte) error) error {
	st := dumpState{seq: c.seq}
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return &OpError{Op: "send dump request", Err: err}
	}
	var ferr error
	for !st.done {
		n, _, flags, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return &OpError{Op: "receive dump", Err: err}
		}
		if flags&unix.MSG_TRUNC != 0 {
			return &OpError{Op: "receive dump", Err: fmt.Errorf("reply truncated at %d bytes", len(c.buf))}
		}
		err = st.parseBuffer(c.buf[:n], func(body []byte) error {
			if ferr == nil { // after an error, drain the dump and keep the first
				ferr = decode(body)
			}
			return nil
		})
		if err != nil {
			// Drain nothing more: a malformed stream cannot be resynchronised,
			// and the next request uses a new sequence number.
			return &OpError{Op: "decode dump", Err: err}
		}
	}
	if ferr != nil {
		return ferr
	}
	if st.interrupted {
		return ErrDumpInterrupted
	}
	return nil
}

// DumpConsistent runs the dumps of reqs, one after the other, until the
// kernel reports all of them consistent, at most MaxDumpAttempts times.
// begin is called before each attempt so the caller can drop what an
// interrupted attempt delivered.
func (c *Conn) DumpConsistent(begin func(), fn func(*Socket) error, reqs ...Request) error {
	var err error
	for range MaxDumpAttempts {
		begin()
		for _, r := range reqs {
			if err = c.Dump(r, fn); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrDumpInterrupted) {
			return err
		}
	}
	return fmt.Errorf("%w %d times in a row; the socket tables are changing fast, try again", err, MaxDumpAttempts)
}
