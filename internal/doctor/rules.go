package doctor

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/trace"
)

// listener applies the per-listener rules.
func (d diag) listener(l *snapshot.Listener) []Finding {
	if l.IsUnix() {
		return d.unixListener(l)
	}
	var fs []Finding
	k := l.Key()
	drops := d.drops(l)
	peak := max(d.o.PeakAccept[k], l.AcceptQueue)
	somax := val(d.ns.Sysctls.Somaxconn)
	srv, args := serverOf(l.Processes, d.o.Cmdlines, d.o.GoVersions)
	req := srv.requestedBacklog(args, int64(l.Backlog), somax)
	stopped := stoppedOwners(l.Processes)
	atLimit := srv.limit != "" && l.Backlog == 0

	// The trace keys listeners by socket: an SO_REUSEPORT member's events
	// are its own (events whose member is unknown match none).
	tr := d.o.traced(l)
	if tr != nil && tr.RequestedBacklog != nil && *tr.RequestedBacklog >= 0 {
		// What listen(2) was really given beats what a command line or a
		// default suggests.
		req = requested{*tr.RequestedBacklog, "its listen() call, seen by eBPF"}
	}
	var events int64
	if tr != nil {
		events = int64(tr.Drops[trace.StageSyn] + tr.Drops[trace.StageAck])
	}
	// A listener's sk_drops also grows for every packet its half-open
	// handshakes discard (a RST ending one: tcp_v4_rcv() goes to
	// discard_and_relse), so it proves an overflow only beside a grown
	// ListenOverflows of its namespace. With eBPF the listener's own
	// syn and ack drop events are exact.
	lost := events > 0 || tr == nil && drops > 0 && d.moved["ListenOverflows"] > 0
	full := peak > l.Backlog
	if full || lost {
		// Drops grew: critical, whether or not a sample caught the queue
		// full (a burst drains between two 100 ms samples). Full without
		// drops: the next SYN will be dropped (clients already waiting
		// retransmit 1 s, 2 s, 3 s, 4 s, 5 s, 7 s, 11 s after their SYN
		// under tcp_syn_linear_timeouts=4, at 1 s, 3 s, 7 s, 15 s under 0,
		// so a short window may see none).
		f := d.finding("accept-queue-overflow", Critical, l)
		if !lost {
			f = d.finding("accept-queue-full", Warning, l)
		}
		e := f.Evidence
		e["backlog"], e["accept_queue_peak"], e["listener_drops"] = int64(l.Backlog), int64(peak), drops
		e["windows"], e["windows_full"], e["refreshes_full"] = int64(d.o.Windows), int64(d.o.FullWindows[k]), int64(d.o.FullAtRefresh[k])
		d.context(&f, "ListenOverflows", "ListenDrops")
		f.Why = "The accept queue held backlog+1 finished handshakes, so the kernel dropped further SYNs " +
			"(tcp_conn_request()) or final ACKs (tcp_check_req()); clients retransmit and wait. listener_drops " +
			"is the listener's own sk_drops in packets: every retransmitted SYN counts again, a final ACK dropped " +
			"on overflow counts twice (tcp_listendrop() and tcp_v4_rcv()), and a RST ending a half-open handshake " +
			"counts too. ListenOverflows and ListenDrops (context) are the whole namespace's."
		if !lost {
			// No overflow was counted in the window: say what a full
			// queue does, not that it did it.
			f.Why = "The accept queue held backlog+1 finished handshakes: while it stays full the kernel drops " +
				"every new SYN (tcp_conn_request()) and final ACK (tcp_check_req()). None was counted in this " +
				"window: no client tried, or the waiting ones had not retransmitted yet."
		}
		slow := full && d.o.Windows > 0 && float64(d.o.FullAtRefresh[k]) >= 0.8*float64(d.o.Windows)
		if tr != nil {
			// With eBPF the waits decide: connections that sit in the
			// queue for long mean accept() is slow, not the burst big.
			for _, st := range trace.Stages {
				if n := tr.Drops[st]; n > 0 {
					e["events_"+strings.ReplaceAll(st.String(), "-", "_")] = int64(n)
				}
			}
			if h := &tr.AcceptWait; h.Count > 0 {
				p50 := h.Quantile(0.5)
				e["accept_wait_count"] = int64(h.Count)
				e["accept_wait_p50_ms"] = p50.Milliseconds()
				e["accept_wait_p99_ms"] = h.Quantile(0.99).Milliseconds()
				slow = p50 >= slowAcceptWait
			}
		}
		slow = slow || len(stopped) > 0 || atLimit
		switch {
		case slow:
			f.Summary = fmt.Sprintf("accept queue stays full (%d/%d): the application accepts too slowly for its arrival rate", peak, l.Backlog)
			switch {
			case len(stopped) > 0:
				f.Summary = fmt.Sprintf("accept queue full (%d/%d): its owner is stopped and accepts nothing", peak, l.Backlog)
				f.Advice = "Continue the stopped process (see owner-stopped); no backlog helps while nothing accepts."
			case srv.limit != "" && (atLimit || srv.name == "haproxy"):
				f.Summary = fmt.Sprintf("accept queue stays full (%d/%d): %s accepts no more, as it does at its connection limit", peak, l.Backlog, srv.name)
				f.Advice = srv.limit + "."
			default:
				f.Advice = "Accept faster: " + srv.workers + ". A bigger backlog only delays the drops while arrivals outpace accept()."
			}
		default:
			switch {
			case full:
				f.Summary = fmt.Sprintf("accept queue overflows in bursts (peak %d/%d): the backlog is too small for them", peak, l.Backlog)
			case events > 0:
				f.Summary = fmt.Sprintf("accept queue overflowed between samples: eBPF saw %d SYNs or final ACKs dropped on it (backlog %d)", events, l.Backlog)
			default:
				f.Summary = fmt.Sprintf("accept queue overflowed between samples: its drops grew by %d while the namespace counted ListenOverflows (backlog %d)", drops, l.Backlog)
			}
			want := nextPow2(max(int64(l.Backlog)*4, 128))
			if req.backlog > int64(l.Backlog) {
				want = max(want, req.backlog)
			}
			f.Advice = fmt.Sprintf("Raise the backlog so bursts fit: %s; the kernel caps it at net.core.somaxconn (%d here), "+
				"read when the server calls listen(), so restart it after raising either.", srv.backlog(want), somax)
			if somax >= 0 && want > somax {
				f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", want))
			}
		}
		d.describe(&f, srv, req)
		fs = append(fs, f)
	}

	if len(stopped) > 0 {
		fs = append(fs, d.ownerStopped(l, stopped, peak, drops, full || lost))
	}
	if atLimit {
		f := d.finding("connection-limit", Warning, l)
		if lost {
			f.Severity = Critical
		}
		f.Summary = fmt.Sprintf("%s is at its connection limit: it set its backlog to 0 and accepts no more", srv.name)
		f.Evidence["backlog"], f.Evidence["accept_queue_peak"], f.Evidence["listener_drops"] = 0, int64(peak), drops
		f.Why = "A server at its connection limit stops accepting; memcached also calls listen(fd, 0) so that only one " +
			"client fits in the accept queue (backlog 0 holds backlog+1) and the rest are dropped at once rather than " +
			"waiting. More accepting threads would change nothing: the limit is a setting."
		f.Advice = srv.limit + "."
		d.describe(&f, srv, req)
		fs = append(fs, f)
	} else if l.Backlog == 0 && srv.limit == "" {
		f := d.finding("backlog-zero", Warning, l)
		f.Summary = "backlog 0: the server called listen(fd, 0); one connection fits in the accept queue, further ones are dropped"
		f.Evidence["backlog"], f.Evidence["accept_queue_peak"], f.Evidence["listener_drops"] = 0, int64(peak), drops
		f.Why = "Servers call listen(fd, 0) to stop taking connections while at a limit (memcached at -c) or by mistake; " +
			"the accept queue then holds backlog+1 = 1 connection (sk_acceptq_is_full())."
		f.Advice = "Find why the process shown asked for 0 (a connection limit reached), or give it a real backlog: " + srv.backlog(511) + "."
		fs = append(fs, f)
	}

	if somax > 0 && int64(l.Backlog) == somax {
		sev := Info
		if drops > 0 && (lost || full) {
			sev = Warning
		}
		f := d.finding("backlog-capped-by-somaxconn", sev, l)
		f.Summary = fmt.Sprintf("backlog %d equals net.core.somaxconn: the application's listen() backlog was probably capped", l.Backlog)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["listener_drops"] = int64(l.Backlog), somax, drops
		f.Why = "listen(2) silently caps its backlog at net.core.somaxconn of the namespace, at the time it is " +
			"called (__sys_listen()). Many servers (Go's net.Listen among them) ask for exactly somaxconn."
		if srv.goAskedSomaxconn(int64(l.Backlog), somax) {
			f.Summary = fmt.Sprintf("backlog %d equals net.core.somaxconn: %s asks for somaxconn itself, so raising somaxconn (and restarting it) is its only knob", l.Backlog, srv.name)
			f.Advice = fmt.Sprintf("Raise net.core.somaxconn, then restart %s: Go reads somaxconn once per process, at its first Listen, so a reload within the process keeps %d.", srv.name, l.Backlog)
			f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", nextPow2(max(somax*2, 1024))))
		} else if req.backlog > somax {
			f.Summary = fmt.Sprintf("%s asked for a backlog of %d and got %d: net.core.somaxconn caps it", srv.name, req.backlog, l.Backlog)
			f.Advice = fmt.Sprintf("Raise somaxconn to %d, then restart %s (or have it call listen() again): existing listeners keep their old cap.", req.backlog, srv.name)
			f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", req.backlog))
		} else {
			f.Advice = "If the application asked for more (" + srv.backlog(somax*2) + "), raise somaxconn to at least that, then restart it " +
				"(or have it call listen() again): existing listeners keep their old cap."
		}
		d.describe(&f, srv, req)
		fs = append(fs, f)
	} else if srv.goAskedSomaxconn(int64(l.Backlog), somax) && int64(l.Backlog) < somax {
		// A Go program asked for somaxconn as it read it once, when it
		// first listened: somaxconn was raised since it started.
		sev := Info
		if full || lost {
			sev = Warning
		}
		f := d.finding("backlog-capped-at-listen", sev, l)
		f.Summary = fmt.Sprintf("%s asked for the net.core.somaxconn of when it started, %d (now %d): restart it to pick up the new somaxconn",
			srv.name, l.Backlog, somax)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["listener_drops"] = int64(l.Backlog), somax, drops
		f.Why = "It is a Go program (" + srv.goVersion + ", from the build info in its executable). Go's net.Listen passes " +
			"net.core.somaxconn as the backlog, read from /proc/sys/net/core/somaxconn once per process (net.listenerBacklog): " +
			"somaxconn was raised after it started, and even a new Listen in the same process asks for the old value."
		f.Advice = fmt.Sprintf("Restart %s as a new process, not a reload within it: it then asks for somaxconn %d.", srv.name, somax)
		d.describe(&f, srv, req)
		fs = append(fs, f)
	} else if somax > 0 && req.backlog > int64(l.Backlog) && int64(l.Backlog) < somax && l.Backlog > 0 {
		// Asked for more than it got, and today's somaxconn would allow
		// more: the cap was the somaxconn of when it called listen().
		sev := Info
		if full || lost {
			sev = Warning
		}
		f := d.finding("backlog-capped-at-listen", sev, l)
		f.Summary = fmt.Sprintf("%s asked for a backlog of %d and got %d, the somaxconn of when it called listen() (now %d): restart it to pick up the new somaxconn",
			srv.name, req.backlog, l.Backlog, somax)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["listener_drops"] = int64(l.Backlog), somax, drops
		f.Why = "listen(2) reads net.core.somaxconn once, when it is called (__sys_listen()); raising it later leaves " +
			"existing listeners with their old cap. " + fmt.Sprintf("%d is what it asked for (%s).", req.backlog, req.source)
		f.Advice = fmt.Sprintf("Restart %s (or reload it so it calls listen() again): with somaxconn %d now it gets min(%d, %d).", srv.name, somax, req.backlog, somax)
		d.describe(&f, srv, req)
		fs = append(fs, f)
	}
	return fs
}

// drops is the growth of l's sk_drops in the window; 0 when unknown.
func (d diag) drops(l *snapshot.Listener) int64 {
	if first := d.o.First.Listener(l.Key()); first != nil && first.Drops != nil && l.Drops != nil {
		return int64(*l.Drops) - int64(*first.Drops)
	}
	return 0
}

// context adds namespace counters that moved beside a listener's finding.
func (d diag) context(f *Finding, names ...string) {
	for _, n := range names {
		if v, ok := d.moved[n]; ok {
			if f.Context == nil {
				f.Context = map[string]int64{}
			}
			f.Context[n] = v
		}
	}
}

// describe names the server and what it asked for on a finding.
func (d diag) describe(f *Finding, srv server, req requested) {
	f.Server = srv.name
	if req.backlog > 0 {
		f.RequestedBacklog, f.RequestedFrom = req.backlog, req.source
	}
}

// stoppedOwners returns the owners that would accept but are stopped: the
// serving ones when some serve, else all, and only when every one of them
// is stopped (a stopped master beside running workers accepts nothing
// anyway).
func stoppedOwners(ps []snapshot.Process) []snapshot.Process {
	served := slices.ContainsFunc(ps, func(p snapshot.Process) bool { return p.Serving })
	var acceptors []snapshot.Process
	for _, p := range ps {
		if p.Role == snapshot.RoleMaster && len(ps) > 1 || served && !p.Serving {
			continue
		}
		acceptors = append(acceptors, p)
	}
	if len(acceptors) == 0 || slices.ContainsFunc(acceptors, func(p snapshot.Process) bool { return !p.Stopped() }) {
		return nil
	}
	return acceptors
}

func (d diag) ownerStopped(l *snapshot.Listener, stopped []snapshot.Process, peak uint32, drops int64, refusing bool) Finding {
	sev := Warning
	if refusing {
		sev = Critical
	}
	f := d.finding("owner-stopped", sev, l)
	var pids []string
	for _, p := range stopped {
		pids = append(pids, strconv.Itoa(p.PID))
	}
	f.Summary = fmt.Sprintf("%s(%s), which accepts on this listener, is stopped (state %s): connections queue up and nobody accepts them",
		stopped[0].Comm, strings.Join(pids, ","), stopped[0].State)
	f.Evidence["accept_queue"], f.Evidence["accept_queue_peak"], f.Evidence["backlog"], f.Evidence["listener_drops"] =
		int64(l.AcceptQueue), int64(peak), int64(l.Backlog), drops
	f.Evidence["stopped_pid"] = int64(stopped[0].PID)
	f.Why = "A process in state T (SIGSTOP, SIGTSTP, a debugger) runs no code: the kernel still completes handshakes into " +
		"its accept queue until backlog+1, then drops SYNs; clients wait and retransmit."
	f.Advice = "Continue it (or find who stopped it: a debugger, a job-control Ctrl-Z, a supervisor)."
	f.Command = "kill -CONT " + strings.Join(pids, " ")
	return f
}

// namespace applies the namespace-wide rules.
func (d diag) namespace() []Finding {
	var fs []Finding
	cookies := val(d.ns.Sysctls.TCPSyncookies)
	mv := d.moved
	// The listener with the fullest SYN queue names where a SYN-queue
	// problem is.
	top, topSyn := d.synTop()
	// Read with sock_diag, a SO_REUSEPORT member's own SYN queue is
	// unknown (a request names no listener): its count is the group's,
	// and only the group as a whole can be judged, never one member.
	members, capacity := d.group(top)
	groupOnly := members > 1 && groupSyn(top)
	synFinding := func(rule, sev string) Finding {
		f := d.finding(rule, sev, top)
		if groupOnly {
			f.Inode, f.Processes = 0, nil
		}
		return f
	}

	if cookies == 0 && mv["TCPReqQFullDrop"] > 0 {
		f := synFinding("syn-queue-full-no-cookies", Critical)
		f.Summary = "the SYN queue is full and SYN cookies are off: SYNs are being dropped"
		f.Evidence["TCPReqQFullDrop"], f.Evidence["ListenDrops"], f.Evidence["tcp_syncookies"] = mv["TCPReqQFullDrop"], mv["ListenDrops"], cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "Half-open handshakes filled the SYN queue to its limit (inet_csk_reqsk_queue_is_full(): backlog+1, " +
			"or backlog on kernels without upstream 3479c7549fb1); with " +
			"tcp_syncookies=0 every further SYN is dropped (TCPReqQFullDrop) and clients wait for retransmits. " +
			"Either a SYN flood or clients whose final ACK is lost or slow."
		f.Advice = "Turn SYN cookies on (they answer SYNs without queueing when the queue is full) and, for legitimate load, raise the backlog."
		f.Command = d.inNetns("sysctl -w net.ipv4.tcp_syncookies=1")
		fs = append(fs, f)
	}

	if mv["SyncookiesSent"] > 0 {
		f := synFinding("syncookies-sent", Warning)
		f.Summary = "SYN cookies are being sent: the SYN queue overflows (a flood, or a backlog too small for the handshake rate)"
		f.Evidence["SyncookiesSent"], f.Evidence["TCPReqQFullDoCookies"], f.Evidence["tcp_syncookies"] = mv["SyncookiesSent"], mv["TCPReqQFullDoCookies"], cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "With the SYN queue full the kernel answers with a SYN cookie instead of queueing (tcp_syn_flood_action()). " +
			"Connections still succeed, but a cookie handshake keeps only what fits in the cookie: without TCP timestamps " +
			"it loses window scaling and SACK, and every cookie costs a hash on both SYN and ACK."
		f.Advice = "If it is a flood, filter it before the host (SYN proxy, rate limits). If the load is legitimate, raise the listen() backlog and tcp_max_syn_backlog so handshakes queue."
		if deferred := mv["TCPDeferAcceptDrop"]; deferred > 0 && cookies != 2 {
			f.Evidence["TCPDeferAcceptDrop"] = deferred
			f.Summary = "SYN cookies are being sent while TCP_DEFER_ACCEPT holds handshakes half-open: clients that connect and wait before sending fill the SYN queue — not necessarily a flood"
			f.Why = deferWhy + " When the SYN queue is full the kernel answers further SYNs with cookies (tcp_syn_flood_action())."
			f.Advice = deferAdvice
		}
		if cookies == 2 {
			f.Summary = "tcp_syncookies=2: every SYN is answered with a cookie, whether the queue is full or not"
			f.Advice = "Use tcp_syncookies=1, which sends cookies only when the SYN queue overflows."
			f.Command = d.inNetns("sysctl -w net.ipv4.tcp_syncookies=1")
		}
		fs = append(fs, f)
	}

	if val(d.ns.Sysctls.TCPAbortOnOverflow) == 1 {
		sev := Info
		if mv["ListenOverflows"] > 0 {
			sev = Warning
		}
		f := d.finding("abort-on-overflow", sev, nil)
		f.Summary = "tcp_abort_on_overflow=1: clients get a RST instead of a retry when the accept queue is full"
		f.Evidence["tcp_abort_on_overflow"], f.Evidence["ListenOverflows"] = 1, mv["ListenOverflows"]
		f.Why = "When a handshake completes into a full accept queue the kernel resets the connection (tcp_check_req()) " +
			"instead of dropping the ACK and letting the client retry: a short burst becomes failed connections."
		f.Advice = "Leave it at 0 unless clients must fail fast and retry elsewhere; fix the accept rate or backlog instead."
		f.Command = d.inNetns("sysctl -w net.ipv4.tcp_abort_on_overflow=0")
		fs = append(fs, f)
	}

	synFull := top != nil && d.o.synQueueFull(topSyn, top.Backlog)
	if synFull && groupOnly {
		synFull = topSyn >= capacity
	}
	if synFull && mv["TCPReqQFullDrop"] == 0 && mv["SyncookiesSent"] == 0 {
		f := synFinding("syn-queue-full", Warning)
		f.Summary = fmt.Sprintf("the SYN queue is full (%d/%d): the next SYNs get cookies or are dropped", topSyn, top.Backlog)
		if groupOnly {
			f.Summary = fmt.Sprintf("the SYN queues of the SO_REUSEPORT group of %d are full (%d half-open for %d places): the next SYNs get cookies or are dropped",
				members, topSyn, capacity)
			f.Evidence["members"], f.Evidence["group_syn_capacity"] = int64(members), int64(capacity)
		}
		f.Evidence["tcp_syncookies"] = cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "The SYN queue's limit of half-open handshakes is reached (backlog+1, or backlog on kernels without " +
			"upstream 3479c7549fb1): their final ACKs have not arrived (a flood, lossy or " +
			"slow clients). Nothing is counted until the next SYN arrives; then it is answered with a cookie " +
			"or, with tcp_syncookies=0, dropped."
		f.Advice = "Find the peers that do not finish their handshakes (ss -n state syn-recv); for legitimate load raise the listen() backlog."
		if deferred := mv["TCPDeferAcceptDrop"]; deferred > 0 {
			f.Evidence["TCPDeferAcceptDrop"] = deferred
			f.Summary += ", held by TCP_DEFER_ACCEPT"
			f.Why, f.Advice = deferWhy, deferAdvice
		}
		fs = append(fs, f)
	}

	if deferred := mv["TCPDeferAcceptDrop"]; deferred > 0 && mv["SyncookiesSent"] == 0 && mv["TCPReqQFullDrop"] == 0 && !(top != nil && d.o.synQueueFull(topSyn, top.Backlog)) {
		f := d.finding("defer-accept", Info, nil)
		f.Summary = fmt.Sprintf("TCP_DEFER_ACCEPT ignored %d bare final ACKs: handshakes wait half-open for the client's first data", deferred)
		f.Evidence["TCPDeferAcceptDrop"] = deferred
		f.Why = deferWhy
		f.Advice = "Nothing to do while the SYN queue has room; " + deferAdvice
		fs = append(fs, f)
	}

	explained := mv["ListenOverflows"] + mv["TCPReqQFullDrop"]
	if extra := mv["ListenDrops"] - explained; extra > 0 {
		f := d.finding("unexplained-listen-drops", Warning, top)
		f.Summary = fmt.Sprintf("ListenDrops grew by %d more than ListenOverflows + TCPReqQFullDrop explain", extra)
		f.Evidence["ListenDrops"], f.Evidence["ListenOverflows"], f.Evidence["TCPReqQFullDrop"] = mv["ListenDrops"], mv["ListenOverflows"], mv["TCPReqQFullDrop"]
		f.Evidence["unexplained"] = extra
		f.Evidence["listener_drops_total"] = d.listenerDrops()
		maxSyn := val(d.ns.Sysctls.TCPMaxSynBacklog)
		f.Evidence["tcp_max_syn_backlog"] = maxSyn
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "ListenDrops counts every drop on the listen path; the other two count only full queues. The rest is " +
			"another kind: without SYN cookies a SYN is dropped once less than a quarter of tcp_max_syn_backlog is " +
			"left (tcp_conn_request()), or memory, routing or security hooks refused the handshake."
		f.Advice = "If the SYN queue peak is near 3/4 of tcp_max_syn_backlog, raise tcp_max_syn_backlog or turn SYN cookies on."
		if cookies == 0 && maxSyn > 0 && int64(topSyn) >= maxSyn-maxSyn/4 {
			f.Summary += ": the tcp_max_syn_backlog 3/4 rule"
			f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.ipv4.tcp_max_syn_backlog=%d", maxSyn*4))
		}
		fs = append(fs, f)
	}
	return fs
}

// TCP_DEFER_ACCEPT, explained where it fills the SYN queue.
const (
	deferWhy = "A listener with TCP_DEFER_ACCEPT (nginx `listen ... deferred`, haproxy `defer-accept`) ignores the " +
		"client's bare final ACK (TCPDeferAcceptDrop, tcp_check_req()) and keeps the handshake half-open in the SYN " +
		"queue until data arrives or the defer time ends. Clients that connect and send nothing at once (a " +
		"server-speaks-first protocol, a health check, a pre-connecting pool) fill the SYN queue: no flood needed."
	deferAdvice = "Raise the listen() backlog (it bounds the SYN queue too) or remove `deferred`/TCP_DEFER_ACCEPT " +
		"where clients do not send at once."
)

// synTop returns the listener of the namespace with the highest SYN-queue
// peak, or nil when none queued any.
func (d diag) synTop() (*snapshot.Listener, uint32) {
	var top *snapshot.Listener
	var best uint32
	for i := range d.o.Last.Listeners {
		l := &d.o.Last.Listeners[i]
		if l.Netns != d.ns.Inode {
			continue
		}
		if p := max(d.o.PeakSyn[l.Key()], synSeen(l)); p > best {
			top, best = l, p
		}
	}
	return top, best
}

// group returns how many listeners share l's address and port in its
// namespace (SO_REUSEPORT members, l included) and how many half-open
// requests they hold together: each member backlog+1.
func (d diag) group(l *snapshot.Listener) (members int, capacity uint32) {
	if l == nil {
		return 0, 0
	}
	for i := range d.o.Last.Listeners {
		m := &d.o.Last.Listeners[i]
		if m.Netns == l.Netns && m.Family == l.Family && m.Address == l.Address && m.Port == l.Port {
			members++
			capacity += m.Backlog + 1
		}
	}
	return members, capacity
}

func (d diag) synEvidence(e map[string]int64, top *snapshot.Listener, peak uint32) {
	if top == nil {
		return
	}
	if members, capacity := d.group(top); members > 1 && groupSyn(top) {
		// The group's count, never one member's.
		e["group_syn_queue_peak"], e["members"], e["group_syn_capacity"] = int64(peak), int64(members), int64(capacity)
		return
	}
	e["syn_queue_peak"], e["backlog"] = int64(peak), int64(top.Backlog)
}

// groupSyn reports whether l's SYN queue is known only as its SO_REUSEPORT
// group's (sock_diag; BPF iterators read each member's own).
func groupSyn(l *snapshot.Listener) bool {
	return l != nil && l.SynQueue == nil && l.GroupSynQueue != nil
}

// listenerDrops sums the growth of the namespace's listeners' sk_drops.
func (d diag) listenerDrops() int64 {
	var sum int64
	for i := range d.o.Last.Listeners {
		l := &d.o.Last.Listeners[i]
		if l.Netns != d.ns.Inode || l.Drops == nil {
			continue
		}
		if f := d.o.First.Listener(l.Key()); f != nil && f.Drops != nil {
			sum += int64(*l.Drops) - int64(*f.Drops)
		}
	}
	return sum
}

// slowAcceptWait is the median accept-queue wait from which an overflowing
// listener counts as a slow acceptor rather than one with too small a
// backlog for its bursts: a burst drains in milliseconds when accept()
// keeps up.
const slowAcceptWait = 50 * time.Millisecond

func nextPow2(v int64) int64 {
	p := int64(1)
	for p < v {
		p <<= 1
	}
	return p
}

// reuseportGroups applies the rule of SO_REUSEPORT groups: TCP listeners of
// the namespace on the same address and port (the kernel allows that only
// with SO_REUSEPORT), each member with its own queues.
func (d diag) reuseportGroups() []Finding {
	type key struct {
		family string
		addr   netip.AddrPort
	}
	groups := map[key][]*snapshot.Listener{}
	var order []key
	for i := range d.o.Last.Listeners {
		l := &d.o.Last.Listeners[i]
		if l.Netns != d.ns.Inode || l.IsUnix() {
			continue
		}
		k := key{l.Family, netip.AddrPortFrom(l.Address, l.Port)}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], l)
	}
	var fs []Finding
	for _, k := range order {
		g := groups[k]
		if len(g) < 2 {
			continue
		}
		var full, idle []*snapshot.Listener
		var hi, lo uint32 = 0, ^uint32(0)
		for _, l := range g {
			p := max(d.o.PeakAccept[l.Key()], l.AcceptQueue)
			hi, lo = max(hi, p), min(lo, p)
			switch {
			case p > l.Backlog:
				full = append(full, l)
			case p <= l.Backlog/2:
				idle = append(idle, l)
			}
		}
		if len(full) == 0 || len(idle) == 0 {
			continue
		}
		f := d.finding("reuseport-imbalance", Warning, full[0])
		var ps []snapshot.Process
		var drops int64
		for _, l := range full {
			drops += d.drops(l)
			served := slices.ContainsFunc(l.Processes, func(p snapshot.Process) bool { return p.Serving })
			for _, p := range l.Processes {
				acceptor := p.Serving || !served && p.Role != snapshot.RoleMaster
				if acceptor && !slices.ContainsFunc(ps, func(q snapshot.Process) bool { return q.PID == p.PID }) {
					ps = append(ps, p)
				}
			}
		}
		f.Processes = ps
		f.Summary = fmt.Sprintf("SO_REUSEPORT group of %d: %d member(s) full while %d idle; clients hashed to the full ones wait or are dropped",
			len(g), len(full), len(idle))
		e := f.Evidence
		e["members"], e["members_full"], e["members_idle"] = int64(len(g)), int64(len(full)), int64(len(idle))
		e["accept_queue_peak_max"], e["accept_queue_peak_min"], e["listener_drops_full"] = int64(hi), int64(lo), drops
		f.Why = "The kernel picks a group member for each new connection by a hash of the client's address and port " +
			"(reuseport_select_sock()), blind to how busy the member is: the share of clients that hashes to a stopped " +
			"or blocked worker's socket queues there and is dropped while the other members sit idle. When a member " +
			"closes, the connections in its queues are reset unless net.ipv4.tcp_migrate_req=1 moves them to another member."
		f.Advice = "Find why the full member's process does not accept (its owner is shown: stopped, blocked, busy). " +
			"For nginx, `listen ... reuseport` gives each worker its own queue; without it the workers share one. " +
			"Set net.ipv4.tcp_migrate_req=1 so that restarting or exiting workers hand their queued clients over instead of resetting them."
		fs = append(fs, f)
	}
	return fs
}

// closedWithQueue: with --bpf, a listener (an SO_REUSEPORT member, a
// restarting server) closed while connections waited in its queues; the
// kernel reset them (inet_csk_listen_stop()). The listener is gone, so the
// finding comes from the trace, not from the snapshot.
func (d diag) closedWithQueue() []Finding {
	var fs []Finding
	for _, st := range d.o.Trace {
		n := st.Drops[trace.StageClose]
		if st.Netns != d.ns.Inode || n == 0 {
			continue
		}
		f := d.finding("closed-with-queue", Warning, nil)
		f.Listener = st.Listener.String()
		f.Processes = st.Processes
		if st.Workload != nil {
			f.Workload = st.Workload
		}
		f.Summary = fmt.Sprintf("a listener closed with %s still queued or half-open: each was reset", plural(int(n), "connection"))
		f.Evidence["resets"] = int64(n)
		if st.Inode != 0 {
			f.Evidence["inode"] = int64(st.Inode)
		}
		f.Why = "When a listening socket closes (a worker exiting or restarting, a member of an SO_REUSEPORT group going away), " +
			"inet_csk_listen_stop() resets every connection still in its accept queue, and a half-open one gets a RST when " +
			"its final ACK arrives: clients that had connected see 'connection reset'. With net.ipv4.tcp_migrate_req=1 " +
			"(Linux 5.14+) the kernel moves them to another member of the group that still listens instead (reuseport_migrate_sock())."
		f.Advice = "Set net.ipv4.tcp_migrate_req=1 in this namespace so that a closing SO_REUSEPORT member hands its queued clients to " +
			"the others, and have the server drain its accept queue before it closes (stop listening last, or keep one member open)."
		f.Command = d.inNetns("sysctl -w net.ipv4.tcp_migrate_req=1")
		fs = append(fs, f)
	}
	return fs
}
