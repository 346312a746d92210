package scenario

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// nobind: listen(2) without bind(2).
func (r *Run) startNobind() error {
	if err := r.oneNamespace(); err != nil {
		return err
	}
	rng, err := r.Server.Sysctl("net.ipv4.ip_local_port_range")
	if err != nil {
		return err
	}
	f := strings.Fields(rng)
	if len(f) != 2 {
		return fmt.Errorf("ip_local_port_range %q: want two numbers", rng)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("ip_local_port_range %q: want two numbers", rng)
	}
	if r.Listener, err = r.Server.ListenNoBind(unix.AF_INET, r.Params.Backlog); err != nil {
		return err
	}
	r.closers = append(r.closers, r.Listener.Close)
	r.finish = func(ctx context.Context) error {
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		port := int64(r.Listener.Port)
		o := r.res.Observed
		o["port"], o["port_range_low"], o["port_range_high"] = port, int64(lo), int64(hi)
		r.res.check("the port comes from ip_local_port_range: port >= low end", ">=", port, int64(lo))
		r.res.check("... and port <= high end", "<=", port, int64(hi))
		l := r.listener(s, r.Listener.Port)
		wildcard := int64(0)
		if l != nil && l.Address.IsUnspecified() {
			wildcard = 1
		}
		r.res.check("the listener is bound to the wildcard address (1 = yes)", "=", wildcard, 1)
		if l != nil {
			r.res.check("its backlog is the listen(2) backlog", "=", int64(l.Backlog), int64(r.Params.Backlog))
		}
		return nil
	}
	return nil
}

// capped: listen(N) above somaxconn, then somaxconn raised and listen again.
func (r *Run) startCapped() error {
	if err := r.oneNamespace(); err != nil {
		return err
	}
	var err error
	if r.Listener, err = r.listen(r.Server, "127.0.0.1:0", r.Params.Backlog); err != nil {
		return err
	}
	r.finish = func(ctx context.Context) error {
		o := r.res.Observed
		first, err := r.snap(ctx, false)
		if err != nil {
			return err
		}
		somax := first.Namespaces[0].Sysctls.Somaxconn
		if somax == nil {
			return fmt.Errorf("net.core.somaxconn is not readable in %s", r.Server.Name)
		}
		n, before := int64(r.Params.Backlog), *somax
		o["somaxconn_before"] = before
		o["backlog_before"] = int64(r.listener(first, r.Listener.Port).Backlog)
		r.res.check("listen(N) with N above somaxconn: backlog = min(N, somaxconn)", "=", o["backlog_before"], min(n, before))

		after := int64(r.Params.Somaxconn)
		if err := r.Server.SetSysctl("net.core.somaxconn", strconv.FormatInt(after, 10)); err != nil {
			return err
		}
		o["somaxconn_after"] = after
		mid, err := r.snap(ctx, false)
		if err != nil {
			return err
		}
		o["backlog_after_raise"] = int64(r.listener(mid, r.Listener.Port).Backlog)
		r.res.check("raising somaxconn does not change a listener that does not call listen() again", "=", o["backlog_after_raise"], min(n, before))

		// listen(2) on a listening socket only updates its backlog (inet_listen()).
		if err := r.Server.Do(func() error { return unix.Listen(r.Listener.Fd, r.Params.Backlog) }); err != nil {
			return fmt.Errorf("listen again: %w", err)
		}
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		o["backlog_after_relisten"] = int64(r.listener(s, r.Listener.Port).Backlog)
		r.res.check("listen(N) again: backlog = min(N, the new somaxconn)", "=", o["backlog_after_relisten"], min(n, after))
		return nil
	}
	return nil
}

// dialFilling dials n clients: the first fill of them one at a time, each
// once the one before has completed its handshake, then the rest at once.
// A burst of SYNs handled in one softirq batch (seen under emulation)
// would otherwise hold more than backlog requests before their ACKs
// come, and tcp_conn_request() answers SYNs beyond a full SYN queue with
// cookies while the accept queue still has room: those clients connect
// instead of waiting. With the accept queue full first, every later SYN
// is dropped (sk_acceptq_is_full()), whatever the SYN queue.
func (r *Run) dialFilling(n, fill int) error {
	for i := range min(n, fill) {
		c, err := r.dial(1)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for c.Stats().States["ESTABLISHED"] == 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("client %d of %d: no handshake within 5 s on loopback", i+1, fill)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n > fill {
		_, err := r.dial(n - fill)
		return err
	}
	return nil
}

// overflow: a slow (or absent) acceptor and a burst of clients.
func (r *Run) startOverflow() error {
	if err := r.oneNamespace(); err != nil {
		return err
	}
	var err error
	if r.Listener, err = r.listen(r.Server, "127.0.0.1:0", r.Params.Backlog); err != nil {
		return err
	}
	r.res.Explanation = fmt.Sprintf(explanations["overflow"], synRetransmits(r.Client))
	if err := r.markBefore(context.Background()); err != nil {
		return err
	}
	if err := r.dialFilling(r.Params.Clients, r.Params.Backlog+1); err != nil {
		return err
	}
	accepted := make(chan int64, 1)
	go r.acceptLoop(accepted)
	r.finish = func(ctx context.Context) error {
		if err := r.sample(ctx, r.Params.Duration); err != nil {
			return err
		}
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		r.halted()
		o := r.res.Observed
		o["accepted"] = <-accepted
		cs := r.clientStats()
		o["clients_established"] = int64(cs.States["ESTABLISHED"])
		o["clients_syn_sent"] = int64(cs.States["SYN-SENT"])
		o["client_retransmits"] = int64(cs.Retransmit)
		l := r.listener(s, r.Listener.Port)
		if l == nil {
			return fmt.Errorf("the listener vanished")
		}
		o["accept_queue"] = int64(l.AcceptQueue)
		o["drops"] = int64(deref(l.Drops))

		b, c := int64(r.Params.Backlog), int64(r.Params.Clients)
		if r.Params.AcceptRate > 0 {
			r.res.check("the accept queue never exceeds backlog+1", "<=", o["peak_accept_queue"], b+1)
			return nil
		}
		r.res.check("the accept queue fills to backlog+1 (never accepted)", "=", o["peak_accept_queue"], min(c, b+1))
		if c <= b+1 {
			return nil
		}
		r.res.check("clients beyond backlog+1 stay in SYN-SENT", "=", o["clients_syn_sent"], c-(b+1))
		r.res.check("ListenOverflows moved", ">", r.res.moved("ListenOverflows"), 0)
		r.res.check("ListenDrops moved as much as ListenOverflows", "=", r.res.moved("ListenDrops"), r.res.moved("ListenOverflows"))
		r.res.check("the listener's drops (sk_drops) equal the ListenDrops delta", "=", o["drops"], r.res.moved("ListenDrops"))
		r.res.check("drops count packets: at least one per refused client", ">=", o["drops"], c-(b+1))
		if r.Params.Duration >= 1500*time.Millisecond {
			r.res.check("refused clients retransmitted their SYN (first RTO 1 s)", ">", o["client_retransmits"], 0)
		}
		return nil
	}
	return nil
}

// acceptLoop accepts at AcceptRate per second until the run stops, and
// reports how many it accepted.
func (r *Run) acceptLoop(accepted chan<- int64) {
	var n int64
	defer func() { accepted <- n }()
	if r.Params.AcceptRate <= 0 {
		<-r.stop
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / r.Params.AcceptRate))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.Listener.SetDeadline(time.Now().Add(10 * time.Millisecond))
			if fd, err := r.Listener.Accept(); err == nil {
				unix.Close(fd)
				n++
			}
		}
	}
}

// synflood: half-open clients from a second namespace.
func (r *Run) startSynflood() error {
	if err := r.twoNamespaces(); err != nil {
		return err
	}
	if err := r.Server.SetSysctl("net.ipv4.tcp_syncookies", strconv.Itoa(r.Params.Syncookies)); err != nil {
		return err
	}
	if m := r.Params.MaxSynBacklog; m > 0 {
		if err := r.Server.SetSysctl("net.ipv4.tcp_max_syn_backlog", strconv.Itoa(m)); err != nil {
			return err
		}
	}
	var err error
	if r.Listener, err = r.listen(r.Server, "0.0.0.0:0", r.Params.Backlog); err != nil {
		return err
	}
	r.Listener.Addr = serverAddr.Addr() // clients come over the veth
	if err := r.markBefore(context.Background()); err != nil {
		return err
	}
	if _, err := r.dial(r.Params.Clients); err != nil {
		return err
	}
	r.finish = func(ctx context.Context) error {
		if err := r.sample(ctx, r.Params.Duration); err != nil {
			return err
		}
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		l := r.listener(s, r.Listener.Port)
		if l == nil {
			return fmt.Errorf("the listener vanished")
		}
		o := r.res.Observed
		o["syn_queue"] = int64(l.SynQueueLen())
		o["accept_queue"] = int64(l.AcceptQueue)
		b, c, m := int64(r.Params.Backlog), int64(r.Params.Clients), int64(r.Params.MaxSynBacklog)
		l64, err := lab.SynQueueLimit(int(b))
		if err != nil {
			return err
		}
		limit := int64(l64)
		o["syn_queue_limit"] = limit
		held := min(c, limit)
		capped := false
		if r.Params.Syncookies == 0 && m > 0 && m-m/4+1 < held {
			// tcp_conn_request(): without cookies, drop once fewer than a
			// quarter of tcp_max_syn_backlog is left.
			held, capped = m-m/4+1, true
		}
		if r.Params.Syncookies == 2 {
			held = 0
		}
		o["syn_queue_predicted"] = held
		mv := r.res.moved
		r.res.check("SYN queue held (its limit, 3/4 of tcp_max_syn_backlog, or 0 with cookies always on)", "=", o["syn_queue"], held)
		r.res.check("no handshake completed: the accept queue stays empty", "=", o["accept_queue"], 0)
		r.res.check("ListenOverflows does not move: the accept queue was never full", "=", mv("ListenOverflows"), 0)
		switch {
		case r.Params.Syncookies == 2:
			r.res.check("every SYN got a cookie: SyncookiesSent = clients", "=", mv("SyncookiesSent"), c)
			r.res.check("nothing dropped: TCPReqQFullDrop", "=", mv("TCPReqQFullDrop"), 0)
		case r.Params.Syncookies == 1:
			r.res.check("SYNs past the full queue got cookies: TCPReqQFullDoCookies = clients - held", "=", mv("TCPReqQFullDoCookies"), c-held)
			r.res.check("SyncookiesSent = TCPReqQFullDoCookies", "=", mv("SyncookiesSent"), mv("TCPReqQFullDoCookies"))
			r.res.check("nothing dropped: TCPReqQFullDrop", "=", mv("TCPReqQFullDrop"), 0)
			r.res.check("nothing dropped: ListenDrops", "=", mv("ListenDrops"), 0)
		case capped:
			r.res.check("the 3/4 rule drops show in ListenDrops", ">=", mv("ListenDrops"), c-held)
			r.res.check("... but never in TCPReqQFullDrop", "=", mv("TCPReqQFullDrop"), 0)
		default:
			r.res.check("SYNs past the full queue dropped: TCPReqQFullDrop >= clients - held (retransmits count again)", ">=", mv("TCPReqQFullDrop"), c-held)
			r.res.check("ListenDrops moved as much as TCPReqQFullDrop", "=", mv("ListenDrops"), mv("TCPReqQFullDrop"))
			r.res.check("no cookies: SyncookiesSent", "=", mv("SyncookiesSent"), 0)
		}
		return nil
	}
	return nil
}

// abort: overflow at the final ACK, with tcp_abort_on_overflow.
//
// At SYN time a full accept queue drops the SYN silently whatever the
// setting; tcp_abort_on_overflow acts only when a handshake completes into
// a full queue. So: park `backlog` handshakes half-open (bare ACKs
// dropped), complete them (a small write passes the filter), park as many
// more as the SYN queue holds (its limit: backlog+1, or backlog on older
// kernels), then complete those at once: one fits, the others overflow.
func (r *Run) startAbort(ctx context.Context) error {
	if err := r.twoNamespaces(); err != nil {
		return err
	}
	if err := r.Server.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		return err
	}
	if err := r.Server.SetSysctl("net.ipv4.tcp_abort_on_overflow", strconv.Itoa(r.Params.Abort)); err != nil {
		return err
	}
	var err error
	b := r.Params.Backlog
	if r.Listener, err = r.listen(r.Server, "0.0.0.0:0", b); err != nil {
		return err
	}
	r.Listener.Addr = serverAddr.Addr()
	if err := r.markBefore(ctx); err != nil {
		return err
	}
	queues := func() (aq, sq uint32, err error) {
		s, err := r.snap(ctx, false)
		if err != nil || len(s.Listeners) == 0 {
			return 0, 0, err
		}
		return s.Listeners[0].AcceptQueue, s.Listeners[0].SynQueueLen(), nil
	}
	wait := func(what string, wantAQ, wantSQ uint32) error {
		return waitFor(ctx, what, func() (bool, error) {
			aq, sq, err := queues()
			return aq == wantAQ && sq == wantSQ, err
		})
	}
	send := func(c interface{ Send([]byte) int }, n int) error {
		return waitFor(ctx, "clients to write", func() (bool, error) { return c.Send([]byte("x")) == n, nil })
	}
	l64, err := lab.SynQueueLimit(b)
	if err != nil {
		return err
	}
	limit := int64(l64)
	r.res.Observed["syn_queue_limit"] = limit
	first, err := r.dial(b)
	if err != nil {
		return err
	}
	if err := wait("the SYN queue to hold backlog", 0, uint32(b)); err != nil {
		return err
	}
	if err := send(first, b); err != nil {
		return err
	}
	if err := wait("backlog handshakes to complete", uint32(b), 0); err != nil {
		return err
	}
	more, err := r.dial(int(limit))
	if err != nil {
		return err
	}
	if err := wait("the SYN queue to fill to its limit", uint32(b), uint32(limit)); err != nil {
		return err
	}
	r.finish = func(ctx context.Context) error {
		more.Send([]byte("x"))
		select {
		case <-time.After(r.Params.Duration):
		case <-ctx.Done():
			return ctx.Err()
		}
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		o := r.res.Observed
		cs := r.clientStats()
		o["clients"] = int64(b) + limit
		overflowing := limit - 1
		o["clients_reset"] = int64(cs.Resets)
		o["accept_queue"] = int64(s.Listeners[0].AcceptQueue)
		r.res.check("the accept queue is full: backlog+1", "=", o["accept_queue"], int64(b+1))
		r.res.check("handshakes completed into a full queue: ListenOverflows >= SYN-queue limit - 1", ">=", r.res.moved("ListenOverflows"), overflowing)
		if r.Params.Abort == 1 {
			r.res.check("tcp_abort_on_overflow=1: each overflowing client got a RST", "=", o["clients_reset"], overflowing)
		} else {
			r.res.check("tcp_abort_on_overflow=0: no client is reset, the ACKs are dropped silently", "=", o["clients_reset"], 0)
		}
		return nil
	}
	return nil
}

// reuseport: two SO_REUSEPORT members, neither accepting; then one closes.
func (r *Run) startReuseport() error {
	if err := r.oneNamespace(); err != nil {
		return err
	}
	a, err := r.Server.ListenReuseport(netip.MustParseAddrPort("127.0.0.1:0"), r.Params.Backlog)
	if err != nil {
		return err
	}
	r.closers = append(r.closers, a.Close)
	b, err := r.Server.ListenReuseport(netip.AddrPortFrom(a.Addr, a.Port), r.Params.Backlog)
	if err != nil {
		return err
	}
	r.closers = append(r.closers, b.Close)
	r.Listener = a
	if err := r.markBefore(context.Background()); err != nil {
		return err
	}
	if _, err := r.dial(r.Params.Clients); err != nil {
		return err
	}
	r.finish = func(ctx context.Context) error {
		if err := r.sample(ctx, r.Params.Duration); err != nil {
			return err
		}
		s, err := r.settle(ctx)
		if err != nil {
			return err
		}
		o := r.res.Observed
		bl := int64(r.Params.Backlog)
		var queued, drops int64
		var closing *snapshot.Listener
		for i := range s.Listeners {
			l := &s.Listeners[i]
			queued += int64(l.AcceptQueue)
			drops += int64(deref(l.Drops))
			r.res.check(fmt.Sprintf("member %d holds at most backlog+1 in its own accept queue", l.Inode), "<=", int64(l.AcceptQueue), bl+1)
			if l.Inode == inodeOf(b.Fd) {
				closing = l
			}
		}
		o["members"], o["accept_queue_sum"], o["drops_sum"] = int64(len(s.Listeners)), queued, drops
		r.res.check("two members share the address and port", "=", o["members"], 2)
		cs := r.clientStats()
		o["clients_established"] = int64(cs.States["ESTABLISHED"])
		r.res.check("the members' accept queues hold every client whose handshake finished", "=", queued, o["clients_established"])
		r.res.check("the members' drops (sk_drops) sum to the ListenDrops delta", "=", drops, r.res.moved("ListenDrops"))
		if closing == nil {
			return fmt.Errorf("the second member vanished")
		}
		// One member closes with its queue full: its clients are reset.
		migrate, err := r.Server.Sysctl("net.ipv4.tcp_migrate_req")
		if err != nil {
			return err
		}
		o["tcp_migrate_req"], _ = strconv.ParseInt(strings.TrimSpace(migrate), 10, 64)
		o["closing_member_queue"] = int64(closing.AcceptQueue)
		if err := b.Close(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		o["clients_reset"] = int64(r.clientStats().Resets)
		if o["tcp_migrate_req"] == 0 {
			r.res.check("closing a member resets the clients in its accept queue (tcp_migrate_req=0)", "=", o["clients_reset"], o["closing_member_queue"])
		}
		return nil
	}
	return nil
}

// inodeOf is the inode of a socket descriptor (socket:[N]), 0 if unknown.
func inodeOf(fd int) uint32 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return uint32(st.Ino)
}

// synRetransmits says when the clients of ns retransmit an unanswered SYN:
// by the namespace's net.ipv4.tcp_syn_linear_timeouts, read at run time,
// or by its absence (Linux before 6.5: exponential backoff).
func synRetransmits(ns *lab.Namespace) string {
	v, err := ns.Sysctl("net.ipv4.tcp_syn_linear_timeouts")
	if errors.Is(err, fs.ErrNotExist) {
		return lab.SynRetransmitText(-1)
	}
	linear, perr := strconv.Atoi(v)
	if err != nil || perr != nil || linear < 0 {
		return fmt.Sprintf("on the kernel's schedule, 1 s after it first (net.ipv4.tcp_syn_linear_timeouts unreadable: %v)", errors.Join(err, perr))
	}
	return lab.SynRetransmitText(linear)
}
