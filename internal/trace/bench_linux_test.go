//go:build amd64

package trace

import (
	"context"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// BenchmarkConnectAccept is one sequential loopback connect + accept +
// close, in a private namespace, without and with the tracer attached
// (docs/performance.md). Besides wall time it reports cpu-ns/op, the CPU
// time of the looping thread (loopback packets are processed in its
// softirqs, so the programs' cost lands there), which other load on the
// machine disturbs less. Run with a fixed count, e.g.
//
//	go test -run XXX -bench ConnectAccept -benchtime 20000x -count 10 ./internal/trace
func BenchmarkConnectAccept(b *testing.B) {
	testutil.RequireRoot(b)
	ns, err := lab.NewNamespace("btrace-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	b.Run("bare", func(b *testing.B) { connectAccept(b, ns) })
	b.Run("traced", func(b *testing.B) { traced(b, ns, Options{}) })
	b.Run("traced-no-unix", func(b *testing.B) { traced(b, ns, Options{NoUnix: true}) })
	b.Run("traced-no-accept-wait", func(b *testing.B) { traced(b, ns, Options{NoAcceptWait: true}) })
	b.Run("traced-no-accept-wait-no-unix", func(b *testing.B) { traced(b, ns, Options{NoAcceptWait: true, NoUnix: true}) })
}

// BenchmarkConnectAcceptRatio alternates the bare loop and the traced one
// (default options) round by round, b.N connections each, and reports the
// median of the rounds' CPU ratios: load that comes and goes (an emulated
// guest, other work on the host) falls on both halves of a round alike,
// where the sub-benchmarks above run minutes apart. The tracer is loaded
// anew for each round.
//
//	go test -run XXX -bench ConnectAcceptRatio -benchtime 2000x ./internal/trace
func BenchmarkConnectAcceptRatio(b *testing.B) {
	testutil.RequireRoot(b)
	ns, err := lab.NewNamespace("btrace-ratio")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	const rounds = 9
	var ratios []float64
	var hook string
	for range rounds {
		connectAccept(b, ns)
		bare := lastCPU
		hook = traced(b, ns, Options{})
		ratios = append(ratios, lastCPU/bare)
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[rounds/2], "median-cpu-ratio")
	b.ReportMetric(ratios[0], "min-cpu-ratio")
	b.ReportMetric(ratios[rounds-1], "max-cpu-ratio")
	b.Logf("accept/unix hooks %s; traced/bare CPU per connection, sorted: %.3f", hook, ratios)
}

// traced runs the loop under a tracer with opts and returns its accept and
// UNIX hooks.
func traced(b *testing.B, ns *lab.Namespace, opts Options) (hooks string) {
	tr, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	hooks = tr.AcceptHook() + "/" + tr.UnixHook()
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx, nil); close(done) }()
	defer func() { cancel(); <-done }()
	connectAccept(b, ns)
	stats, err := tr.Stats()
	if err != nil {
		b.Fatal(err)
	}
	var n uint64
	for _, s := range stats {
		n += s.AcceptWait.Count
	}
	if !opts.NoAcceptWait && n < uint64(b.N) {
		b.Errorf("tracer saw %d accepts of %d", n, b.N)
	}
	return hooks
}

var lastCPU float64

// connectAccept runs b.N connections on one thread inside ns, with
// blocking sockets: connect, accept, close (client first, with linger 0, so
// no TIME_WAIT piles up).
func connectAccept(b *testing.B, ns *lab.Namespace) {
	err := ns.Do(func() error {
		l, _, sa, err := loopbackListener(128)
		if err != nil {
			return err
		}
		defer unix.Close(l)
		var cpu0, cpu1 unix.Timespec
		b.ResetTimer()
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &cpu0)
		for range b.N {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
				return err
			}
			if err := unix.Connect(c, sa); err != nil {
				return err
			}
			a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
			if err != nil {
				return err
			}
			unix.Close(c)
			unix.Close(a)
		}
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &cpu1)
		b.StopTimer()
		lastCPU = float64(cpu1.Nano()-cpu0.Nano()) / float64(b.N)
		b.ReportMetric(lastCPU, "cpu-ns/op")
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// loopbackListener opens a TCP listener on 127.0.0.1 and a free port in
// the current namespace; it returns its descriptor, inode and address.
func loopbackListener(backlog int) (fd int, ino uint64, sa unix.Sockaddr, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, nil, err
	}
	var st unix.Stat_t
	if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		if err = unix.Listen(fd, backlog); err == nil {
			if err = unix.Fstat(fd, &st); err == nil {
				sa, err = unix.Getsockname(fd)
			}
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, nil, err
	}
	return fd, st.Ino, sa, nil
}
