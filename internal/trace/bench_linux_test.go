//go:build amd64

package trace

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
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

// BenchmarkProgramTime is what the tracer's programs cost per connection
// of the loop, by the kernel's own account of their run time
// (BPF_ENABLE_STATS), beside the bare loop's CPU per connection
// (bpf-fraction). Unlike BenchmarkConnectAcceptRatio it does not rest on
// two noisy timings, so it says more in an emulated guest; it leaves out
// the trampolines' own entry and exit. The statistics switch is
// kernel-wide (the kernel.bpf_stats_enabled sysctl's), so this runs only
// where trampolines load (the guests of scripts/kernels.sh), never on a
// host that refuses them.
//
//	scripts/kernels.sh --bench ProgramTime --run XXX 6.12
func BenchmarkProgramTime(b *testing.B) {
	testutil.RequireRoot(b)
	ns, err := lab.NewNamespace("btrace-progtime")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	var bare []float64
	for range 5 {
		connectAccept(b, ns)
		bare = append(bare, lastCPU)
	}
	slices.Sort(bare)
	tr, err := New(Options{}) // its programs run from here on
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if tr.AcceptHook() != "fexit" {
		b.Skipf("trampolines refused here (accept hook %s): the stats switch is left alone", tr.AcceptHook())
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx, nil); close(done) }()
	defer func() { cancel(); <-done }()
	before := programTimes(b, tr)
	connectAccept(b, ns)
	after := programTimes(b, tr)
	var total float64
	var per []string
	for name, t := range after {
		ns := float64(t-before[name]) / float64(b.N)
		total += ns
		if ns >= 1 {
			per = append(per, fmt.Sprintf("%s %.0f", name, ns))
		}
	}
	slices.Sort(per)
	b.ReportMetric(total, "bpf-ns/conn")
	b.ReportMetric(total/bare[len(bare)/2], "bpf-fraction")
	b.Logf("bare loop %.0f ns of CPU a connection (median of 5); programs, ns a connection: %s", bare[len(bare)/2], strings.Join(per, ", "))
}

// programTimes is each attached program's run time so far, by name.
func programTimes(b *testing.B, t *Tracer) map[string]time.Duration {
	out := make(map[string]time.Duration)
	for _, l := range t.links {
		info, err := l.Info()
		if err != nil {
			b.Fatal(err)
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Stats()
		pi, _ := p.Info()
		p.Close()
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprint(info.Program)
		if pi != nil {
			name = pi.Name
		}
		out[name] += st.Runtime
	}
	return out
}
