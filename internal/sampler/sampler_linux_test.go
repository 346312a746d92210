package sampler

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/testutil"
	"golang.org/x/sys/unix"
)

func newNS(t testing.TB) *lab.Namespace { return labtest.Namespace(t, "bl-sampler") }

func listen(t testing.TB, ns *lab.Namespace, backlog int) *lab.Listener {
	return labtest.Listen(t, ns, "127.0.0.1:0", backlog)
}

func target(ns *lab.Namespace) collect.Target {
	return collect.Target{Path: ns.Path, Name: ns.Name}
}

// current reads the listener on port with a full collection.
func current(t *testing.T, ns *lab.Namespace, port uint16) snapshot.Listener {
	t.Helper()
	snap, err := collect.Collect(context.Background(), collect.Options{Targets: []collect.Target{target(ns)}, Ports: []uint16{port}, NoOwners: true})
	if err != nil || len(snap.Listeners) != 1 {
		t.Fatalf("collect: %v, %+v", err, snap)
	}
	return snap.Listeners[0]
}

func waitQueue(t *testing.T, ns *lab.Namespace, port uint16, want uint32) snapshot.Listener {
	t.Helper()
	var l snapshot.Listener
	testutil.Eventually(t, 5*time.Second, func() error {
		if l = current(t, ns, port); l.AcceptQueue != want {
			return fmt.Errorf("accept queue %d, want %d", l.AcceptQueue, want)
		}
		return nil
	})
	return l
}

// TestBurstShowsInPeak: the queue fills to backlog+1 and is drained again
// between two Takes; the peak keeps what the queue no longer shows.
func TestBurstShowsInPeak(t *testing.T) {
	ns := newNS(t)
	l := listen(t, ns, 5)
	s := New(Options{Interval: 20 * time.Millisecond})
	if err := s.SetTargets([]collect.Target{target(ns)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	s.Take()

	// backlog+1 clients: all complete, none dropped, none retransmits later.
	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 6)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	full := waitQueue(t, ns, l.Port, 6)
	// A few rounds while the queue is full, counted rather than slept
	// for: on a loaded machine a round (the first loads the iterator
	// program) can take longer than any fixed wait.
	seen := s.Stats().Samples
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := s.Stats().Samples; n < seen+3 {
			return fmt.Errorf("%d sampling rounds since the queue filled, want 3", n-seen)
		}
		return nil
	})
	fds, err := l.AcceptN(6)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitQueue(t, ns, l.Port, 0)

	key := Key{Netns: full.Netns, Inode: full.Inode}
	peaks := s.Take()
	if got, ok := peaks[key]; !ok || got != 6 {
		t.Fatalf("peak %d (present %v), want 6 = backlog+1; all peaks %v", got, ok, peaks)
	}
	time.Sleep(100 * time.Millisecond)
	if got := s.Take()[key]; got != 0 {
		t.Errorf("peak in the next window %d, want 0: Take must start a new window", got)
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.Samples == 0 || st.Errors != 0 || st.Namespaces != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestFollowsTargets: namespaces come and go with SetTargets; closed
// listeners leave the peaks; the caller's own namespace is watched once.
func TestFollowsTargets(t *testing.T) {
	a, b := newNS(t), newNS(t)
	la := listen(t, a, 3)
	listen(t, b, 4)
	// sock_diag, which passes every listener: the iterator passes only
	// those with a queue (TestIteratorEqualsSockDiag).
	s := New(Options{NoBPF: true})
	defer s.Close()
	for range 2 { // twice: the second call must keep, not reopen
		if err := s.SetTargets([]collect.Target{target(a), target(b), {}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().Namespaces; n != 3 {
		t.Fatalf("watching %d namespaces, want 3 (a, b and this one)", n)
	}
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	inA := current(t, a, la.Port)
	peaks := s.Take()
	if _, ok := peaks[Key{inA.Netns, inA.Inode}]; !ok {
		t.Errorf("listener of a missing from %v", peaks)
	}

	if err := s.SetTargets([]collect.Target{target(a)}); err != nil {
		t.Fatal(err)
	}
	la.Close()
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Namespaces != 1 || st.Listeners != 0 {
		t.Errorf("after dropping b and closing a's listener: %+v, want 1 namespace, 0 listeners", st)
	}
	if peaks := s.Take(); len(peaks) != 0 {
		t.Errorf("peaks %v, want none", peaks)
	}
	if err := s.SetTargets([]collect.Target{{Path: "/run/netns/bl-sampler-no-such", Name: "gone"}}); err == nil {
		t.Error("a namespace that does not exist: no error")
	}
	if st := s.Stats(); st.Namespaces != 0 || st.Errors != 1 {
		t.Errorf("stats %+v, want 0 namespaces and 1 error", st)
	}
}

// BenchmarkSample10000 times one sample of a namespace with 10,000
// listeners, the cost Run pays every interval: with the BPF iterator
// (where it loads) while every queue is empty and no client arrives
// (bpf_iter-idle: the read is skipped, collect.QueueReader), with the
// iterator while one queue holds a client (bpf_iter: every round reads),
// and with sock_diag.
func BenchmarkSample10000(b *testing.B) {
	ns := newNS(b)
	var first *lab.Listener
	for i := range 10000 {
		l := listen(b, ns, 128)
		if i == 0 {
			first = l
		}
	}
	for _, v := range []struct {
		name   string
		noBPF  bool
		client bool
	}{{"bpf_iter-idle", false, false}, {"bpf_iter", false, true}, {"sock_diag", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			if v.client {
				c, err := ns.Dial(netip.AddrPortFrom(first.Addr, first.Port), 1)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
			}
			s := New(Options{NoBPF: v.noBPF})
			defer s.Close()
			if err := s.SetTargets([]collect.Target{target(ns)}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := s.Sample(); err != nil {
					b.Fatal(err)
				}
			}
			st := s.Stats()
			if st.Listeners != 10000 {
				b.Fatalf("saw %d listeners", st.Listeners)
			}
			b.ReportMetric(float64(st.Quiet)/float64(st.Samples), "skipped/op")
		})
	}
}

// TestIteratorEqualsSockDiag: the iterator's sampler and sock_diag's see
// the same listeners and the same non-empty queues (the iterator leaves out
// the empty ones, whose peak is 0 either way), in another namespace and in
// this one.
func TestIteratorEqualsSockDiag(t *testing.T) {
	testutil.RequireRoot(t)
	if source, why := collect.Source(); source != collect.SourceBPF {
		t.Skipf("BPF iterators do not load here: %s", why)
	}
	ns := newNS(t)
	var ls []*lab.Listener
	for i := range 40 {
		ls = append(ls, listen(t, ns, 8+i%8))
	}
	labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "", 3)
	for i, l := range ls[:10] {
		labtest.Dial(t, ns, netip.AddrPortFrom(l.Addr, l.Port), 1+i%3)
	}
	for i, l := range ls[:10] {
		waitQueue(t, ns, l.Port, uint32(1+i%3))
	}
	sample := func(noBPF bool, tg collect.Target) (map[Key]uint32, int) {
		s := New(Options{NoBPF: noBPF})
		defer s.Close()
		if err := s.SetTargets([]collect.Target{tg}); err != nil {
			t.Fatal(err)
		}
		if err := s.Sample(); err != nil {
			t.Fatal(err)
		}
		n := s.Stats().Listeners
		peaks := s.Take()
		maps.DeleteFunc(peaks, func(_ Key, v uint32) bool { return v == 0 })
		return peaks, n
	}
	iter, nIter := sample(false, target(ns))
	diag, nDiag := sample(true, target(ns))
	if nIter != 41 || nDiag != 41 {
		t.Errorf("listeners seen: iterator %d, sock_diag %d, want 41", nIter, nDiag)
	}
	if len(iter) != 10 || !maps.Equal(iter, diag) {
		t.Errorf("non-empty peaks: iterator %v, sock_diag %v (want 10)", iter, diag)
	}
	// This namespace, read without entering one: whatever listens here,
	// the two agree when nothing moved between them.
	for range 5 {
		a, na := sample(false, collect.Target{})
		b, nb := sample(true, collect.Target{})
		a2, na2 := sample(false, collect.Target{})
		if na == na2 && maps.Equal(a, a2) {
			if na != nb || !maps.Equal(a, b) {
				t.Errorf("own namespace: iterator %d listeners %v, sock_diag %d %v", na, a, nb, b)
			}
			return
		}
	}
	t.Log("own namespace kept changing; not compared")
}

// TestUnixBurstShowsInPeak: a UNIX listener's queue fills to backlog+1 and
// is drained again between two Takes; the peak, keyed like the snapshot's
// listener, keeps it.
func TestUnixBurstShowsInPeak(t *testing.T) {
	ns := newNS(t)
	l := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, "", 3)
	s := New(Options{})
	if err := s.SetTargets([]collect.Target{target(ns)}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if refused := labtest.DialUnix(t, ns, l, 6); refused != 2 {
		t.Fatalf("%d refused, want 2", refused)
	}
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	for {
		fd, ok, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		unix.Close(fd)
	}
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	snap, err := collect.Collect(context.Background(), collect.Options{Targets: []collect.Target{target(ns)}, Paths: []string{l.Name}, NoOwners: true})
	if err != nil || len(snap.Listeners) != 1 {
		t.Fatalf("collect: %v %+v", err, snap)
	}
	cur := snap.Listeners[0]
	peaks := s.Take()
	if p := peaks[Key{Netns: cur.Netns, Inode: cur.Inode}]; cur.AcceptQueue != 0 || p != 4 {
		t.Errorf("queue now %d, peak %d; want 0 and backlog+1 = 4 (peaks %v)", cur.AcceptQueue, p, peaks)
	}
}

// TestQuietWakes: with the iterator, idle listeners whose queues are all
// empty are not read again until a connection could have queued; the
// first round after clients arrive sees their queue, and a queue that
// stays non-empty is read every round.
func TestQuietWakes(t *testing.T) {
	testutil.RequireRoot(t)
	if source, why := collect.Source(); source != collect.SourceBPF {
		t.Skipf("BPF iterators do not load here: %s", why)
	}
	ns := newNS(t)
	l := listen(t, ns, 8)
	listen(t, ns, 8)
	s := New(Options{})
	defer s.Close()
	if err := s.SetTargets([]collect.Target{target(ns)}); err != nil {
		t.Fatal(err)
	}
	sample := func(n int) {
		t.Helper()
		for range n {
			if err := s.Sample(); err != nil {
				t.Fatal(err)
			}
		}
	}
	sample(4) // read, read again with the counters still, then quiet
	if q := s.Stats().Quiet; q < 1 {
		t.Fatalf("4 rounds over idle listeners: %d skipped, want at least 1", q)
	}
	s.Take()

	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cur := waitQueue(t, ns, l.Port, 3)
	quiet := s.Stats().Quiet
	sample(1)
	if got := s.Take()[Key{cur.Netns, cur.Inode}]; got != 3 {
		t.Fatalf("the round after 3 clients queued: peak %d, want 3", got)
	}
	sample(3)
	if q := s.Stats().Quiet; q != quiet {
		t.Errorf("%d rounds skipped while a queue held 3", q-quiet)
	}
	if got := s.Take()[Key{cur.Netns, cur.Inode}]; got != 3 {
		t.Errorf("queue still 3: peak %d", got)
	}

	fds, err := l.AcceptN(3)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitQueue(t, ns, l.Port, 0)
	sample(4)
	if q := s.Stats().Quiet; q == quiet {
		t.Error("accepted and idle again: no round skipped")
	}
	if peaks := s.Take(); len(peaks) != 0 {
		t.Errorf("peaks %v after the queue emptied, want none", peaks)
	}
}
