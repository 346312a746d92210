package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Prefix names every namespace the lab makes: Prefix-PID-N.
const Prefix = "blab"

// Addresses of the veth pair in two-namespace scenarios: documentation
// addresses (RFC 5737) that exist only inside the lab's namespaces.
var (
	serverAddr = netip.MustParsePrefix("192.0.2.1/24")
	clientAddr = netip.MustParsePrefix("192.0.2.2/24")
)

// Run is a scenario in progress. Tests use it as a fixture: Start it,
// observe Server and Listener while it runs, then Finish and Close.
type Run struct {
	Name     string
	Params   Params
	Server   *lab.Namespace
	Client   *lab.Namespace // the clients' namespace; Server when they share it
	Listener *lab.Listener
	Clients  []*lab.Clients

	before  snapshot.Counters
	res     Result
	finish  func(ctx context.Context) error
	closers []func() error
	stop    chan struct{}
	halt    sync.Once
}

// halted ends the run's background work (the acceptor). Idempotent.
func (r *Run) halted() { r.halt.Do(func() { close(r.stop) }) }

// Target is the collection target of the server's namespace.
func (r *Run) Target() collect.Target {
	return collect.Target{Path: r.Server.Path, Name: r.Server.Name}
}

// Addr is where clients connect.
func (r *Run) Addr() netip.AddrPort { return netip.AddrPortFrom(r.Listener.Addr, r.Listener.Port) }

// Execute runs a scenario to the end and tears it down.
func Execute(ctx context.Context, name string, p Params) (*Result, error) {
	r, err := Start(ctx, name, p)
	if err != nil {
		return nil, err
	}
	res, err := r.Finish(ctx)
	return res, errors.Join(err, r.Close())
}

// Start builds the scenario's namespaces and starts driving it.
func Start(ctx context.Context, name string, p Params) (*Run, error) {
	if !Known(name) {
		return nil, fmt.Errorf("unknown scenario %q (want one of %v)", name, Names)
	}
	if os.Geteuid() != 0 {
		return nil, ErrNeedRoot
	}
	p = withDefaults(name, p)
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// What a crashed earlier run left behind must not trip this one.
	lab.RemoveStale(Prefix)
	r := &Run{Name: name, Params: p, stop: make(chan struct{})}
	r.res = Result{Scenario: name, Params: p, Explanation: explanations[name], Observed: map[string]int64{}}
	var err error
	switch name {
	case "nobind":
		err = r.startNobind()
	case "capped":
		err = r.startCapped()
	case "overflow":
		err = r.startOverflow()
	case "synflood":
		err = r.startSynflood()
	case "abort":
		err = r.startAbort(ctx)
	case "unix-overflow":
		err = r.startUnixOverflow()
	case "reuseport":
		err = r.startReuseport()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", name, err), r.Close())
	}
	return r, nil
}

// Close tears everything down: clients, listener, namespaces. Idempotent.
func (r *Run) Close() error {
	r.halted()
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	r.closers = nil
	return errors.Join(errs...)
}

// Finish drives the scenario for its duration (or until ctx ends), then
// measures and checks.
func (r *Run) Finish(ctx context.Context) (*Result, error) {
	if err := r.finish(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	r.res.Namespace = r.Server.Name
	return &r.res, nil
}

func (r *Run) namespace(prefix string) (*lab.Namespace, error) {
	ns, err := lab.NewNamespace(Prefix + "-" + prefix)
	if err != nil {
		if os.IsPermission(err) {
			return nil, ErrNeedRoot
		}
		return nil, err
	}
	r.closers = append(r.closers, ns.Close)
	return ns, nil
}

func (r *Run) listen(ns *lab.Namespace, addr string, backlog int) (*lab.Listener, error) {
	l, err := ns.Listen(netip.MustParseAddrPort(addr), backlog)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, l.Close)
	return l, nil
}

func (r *Run) dial(n int) (*lab.Clients, error) {
	c, err := r.Client.Dial(r.Addr(), n)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, c.Close)
	r.Clients = append(r.Clients, c)
	return c, nil
}

// oneNamespace makes the namespace of a loopback scenario: server and
// clients share it.
func (r *Run) oneNamespace() error {
	var err error
	r.Server, err = r.namespace(r.Name)
	r.Client = r.Server
	return err
}

// twoNamespaces makes a server and a client namespace joined by a veth
// pair, the client's bare ACKs dropped so handshakes stay half-open.
func (r *Run) twoNamespaces() error {
	var err error
	if r.Server, err = r.namespace("srv"); err != nil {
		return err
	}
	if r.Client, err = r.namespace("cli"); err != nil {
		return err
	}
	if err := lab.Veth(r.Server, r.Client, serverAddr, clientAddr); err != nil {
		return err
	}
	return r.Client.DropBareACKs()
}

// snap collects the server's namespace, the scenario's listeners only.
func (r *Run) snap(ctx context.Context, owners bool) (*snapshot.Snapshot, error) {
	opts := collect.Options{Targets: []collect.Target{r.Target()}, NoOwners: !owners}
	if r.Listener != nil {
		opts.Ports = []uint16{r.Listener.Port}
	}
	s, err := collect.Collect(ctx, opts)
	if err != nil {
		return nil, err
	}
	if e := s.Namespaces[0].Error; e != "" {
		return nil, errors.New(e)
	}
	return s, nil
}

func (r *Run) markBefore(ctx context.Context) error {
	s, err := r.snap(ctx, false)
	if err != nil {
		return err
	}
	r.before = s.Namespaces[0].Counters
	return nil
}

// settle takes snapshots until two in a row agree on the counters and the
// listener, so a SYN retransmitted between reads cannot split the numbers.
func (r *Run) settle(ctx context.Context) (*snapshot.Snapshot, error) {
	prevFrom := time.Now()
	prev, err := r.snap(ctx, true)
	if err != nil {
		return nil, err
	}
	prevAt := time.Now()
	settled := false
	// Up to 30 rounds: retransmitted SYNs come in waves (every second with
	// tcp_syn_linear_timeouts), and on a slow machine (an emulated guest
	// with tracers beside it) one snapshot takes long enough that two
	// quiet reads in a row need a few tries.
	for range 30 {
		from := time.Now()
		cur, err := r.snap(ctx, true)
		if err != nil {
			return nil, err
		}
		if same(prev, cur) {
			settled = true
			break
		}
		prev, prevFrom, prevAt = cur, from, time.Now()
		time.Sleep(20 * time.Millisecond)
	}
	// Settled, nothing moved between the two reads: prevAt is a moment of
	// that count. Else (handshakes retried all along, on a slow machine)
	// the count was read at some moment of the snapshot's own span.
	r.res.CountedFrom, r.res.CountedAt = prevAt, prevAt
	if !settled {
		r.res.CountedFrom = prevFrom
	}
	r.res.Listeners = prev.Listeners
	r.res.Moved = prev.Namespaces[0].Counters.Delta(r.before)
	return prev, nil
}

func same(a, b *snapshot.Snapshot) bool {
	if len(a.Listeners) != len(b.Listeners) {
		return false
	}
	for i := range a.Listeners {
		x, y := a.Listeners[i], b.Listeners[i]
		if x.AcceptQueue != y.AcceptQueue || x.SynQueue != y.SynQueue || deref(x.Drops) != deref(y.Drops) {
			return false
		}
	}
	return slices.Equal(a.Namespaces[0].Counters.Named(), b.Namespaces[0].Counters.Named())
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// sample watches the scenario's listener every 50 ms until d has passed
// (or ctx ends) and records the peaks of its queues.
func (r *Run) sample(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		s, err := r.snap(ctx, false)
		if err != nil {
			return err
		}
		for _, l := range s.Listeners {
			r.res.Observed["peak_accept_queue"] = max(r.res.Observed["peak_accept_queue"], int64(l.AcceptQueue))
			r.res.Observed["peak_syn_queue"] = max(r.res.Observed["peak_syn_queue"], int64(l.SynQueueLen()))
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitFor polls cond every 20 ms for up to 5 s.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Run) listener(s *snapshot.Snapshot, port uint16) *snapshot.Listener {
	for i := range s.Listeners {
		if s.Listeners[i].Port == port {
			return &s.Listeners[i]
		}
	}
	return nil
}

// clientStats sums the stats of every client group.
func (r *Run) clientStats() lab.ClientStats {
	sum := lab.ClientStats{States: map[string]int{}}
	for _, c := range r.Clients {
		st := c.Stats()
		for k, v := range st.States {
			sum.States[k] += v
		}
		sum.Retransmit += st.Retransmit
		sum.Resets += st.Resets
		sum.Refused += st.Refused
	}
	return sum
}
