package scenario

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// unixWait bounds the blocking clients' wait (SO_SNDTIMEO).
const unixWait = 300 * time.Millisecond

// unix-overflow: a UNIX stream listener that never accepts, a burst of
// non-blocking clients, two blocking ones, and a listen() above somaxconn.
func (r *Run) startUnixOverflow() error {
	if err := r.oneNamespace(); err != nil {
		return err
	}
	if err := r.Server.SetSysctl("net.core.somaxconn", strconv.Itoa(r.Params.Somaxconn)); err != nil {
		return err
	}
	// Abstract names belong to the namespace: nothing on disk to clean.
	l, err := r.listenUnix("@backlog-lab-unix-overflow", r.Params.Backlog)
	if err != nil {
		return err
	}
	big, err := r.listenUnix("@backlog-lab-unix-capped", r.Params.Somaxconn+1000)
	if err != nil {
		return err
	}
	c, refused, err := r.Server.DialUnix(unix.SOCK_STREAM, l.Name, r.Params.Clients)
	if err != nil {
		return err
	}
	r.closers = append(r.closers, c.Close)
	r.finish = func(ctx context.Context) error {
		o := r.res.Observed
		o["clients_connected"], o["clients_refused_eagain"] = int64(c.Len()), int64(refused)
		s, err := r.unixSnap(ctx, l.Name, big.Name)
		if err != nil {
			return err
		}
		full, capped := unixListener(s, l.Name), unixListener(s, big.Name)
		if full == nil || capped == nil {
			return fmt.Errorf("the lab's UNIX listeners are not in the snapshot (%d listeners)", len(s.Listeners))
		}
		r.res.Listeners = s.Listeners
		b, n := min(int64(r.Params.Backlog), int64(r.Params.Somaxconn)), int64(r.Params.Clients)
		o["accept_queue"], o["backlog"] = int64(full.AcceptQueue), int64(full.Backlog)
		r.res.check("backlog reads min(listen(2) backlog, somaxconn)", "=", o["backlog"], b)
		r.res.check("non-blocking connects get in until the queue holds backlog+1 (unix_recvq_full(): queue > backlog)", "=", o["clients_connected"], min(n, b+1))
		r.res.check("the rest fail at once with EAGAIN", "=", o["clients_refused_eagain"], max(0, n-(b+1)))
		r.res.check("accept_queue reads backlog+1", "=", o["accept_queue"], min(n, b+1))
		drops := int64(0)
		if full.Drops != nil {
			drops = 1
		}
		r.res.check("the kernel counts no refused UNIX connect: drops absent (0 = absent)", "=", drops, 0)

		if n > b {
			// A blocking connect on the full queue sleeps (unix_wait_for_peer())
			// until SO_SNDTIMEO runs out, then fails with EAGAIN.
			start := time.Now()
			_, err := r.Server.ConnectUnixBlocking(unix.SOCK_STREAM, l.Name, unixWait)
			o["blocking_waited_ms"] = time.Since(start).Milliseconds()
			eagain := int64(0)
			if errors.Is(err, unix.EAGAIN) {
				eagain = 1
			}
			r.res.check(fmt.Sprintf("a blocking connect waits its SO_SNDTIMEO (%v) on the full queue, in ms", unixWait), ">=", o["blocking_waited_ms"], unixWait.Milliseconds())
			r.res.check("... then fails with EAGAIN (1 = yes)", "=", eagain, 1)

			// Another one waits until accept() makes room, then gets in.
			done := make(chan error, 1)
			go func() {
				fd, err := r.Server.ConnectUnixBlocking(unix.SOCK_STREAM, l.Name, 5*time.Second)
				if err == nil {
					unix.Close(fd)
				}
				done <- err
			}()
			select {
			case err := <-done:
				return fmt.Errorf("a blocking connect to a full queue returned at once: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			fd, ok, err := l.Accept()
			if err != nil || !ok {
				return fmt.Errorf("accept one: ok %v, %v", ok, err)
			}
			unix.Close(fd)
			got := int64(0)
			if err := <-done; err == nil {
				got = 1
			}
			r.res.check("a blocking connect waiting on the full queue gets in once accept() makes room (1 = yes)", "=", got, 1)
		}

		o["somaxconn"], o["capped_listen_backlog"], o["capped_backlog"] = int64(r.Params.Somaxconn), int64(r.Params.Somaxconn+1000), int64(capped.Backlog)
		r.res.check("listen(N) above net.core.somaxconn: backlog = somaxconn, as for TCP (__sys_listen())", "=", o["capped_backlog"], int64(r.Params.Somaxconn))
		return nil
	}
	return nil
}

func (r *Run) listenUnix(name string, backlog int) (*lab.UnixListener, error) {
	l, err := r.Server.ListenUnix(unix.SOCK_STREAM, name, backlog)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, l.Close)
	return l, nil
}

// unixSnap collects the server's namespace, the named UNIX listeners only.
func (r *Run) unixSnap(ctx context.Context, names ...string) (*snapshot.Snapshot, error) {
	s, err := collect.Collect(ctx, collect.Options{Targets: []collect.Target{r.Target()}, Paths: names})
	if err != nil {
		return nil, err
	}
	if e := s.Namespaces[0].Error; e != "" {
		return nil, errors.New(e)
	}
	for _, w := range s.Warnings {
		if collect.UnixUnknown(w) {
			return nil, errors.New(w)
		}
	}
	return s, nil
}

func unixListener(s *snapshot.Snapshot, name string) *snapshot.Listener {
	for i := range s.Listeners {
		if s.Listeners[i].IsUnix() && s.Listeners[i].Path == name {
			return &s.Listeners[i]
		}
	}
	return nil
}
