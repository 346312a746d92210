package doctor

import (
	"fmt"
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
	var drops int64
	if first := d.o.First.Listener(k); first != nil && first.Drops != nil && l.Drops != nil {
		drops = int64(*l.Drops) - int64(*first.Drops)
	}
	peak := max(d.o.PeakAccept[k], l.AcceptQueue)
	somax := val(d.ns.Sysctls.Somaxconn)

	tr := d.o.traced(l)
	// With eBPF, syn and ack drops prove the accept queue overflowed even
	// when the burst drained between two samples.
	overflowed := peak > l.Backlog || tr != nil && tr.Drops[trace.StageSyn]+tr.Drops[trace.StageAck] > 0
	if overflowed {
		// Full with drops in the window: critical. Full without: the next
		// SYN will be dropped (clients already waiting retransmit 1 s, 2 s,
		// 3 s, 4 s, 5 s, 7 s, 11 s after their SYN under
		// tcp_syn_linear_timeouts=4, at 1 s, 3 s, 7 s, 15 s under 0, so a
		// short window may see none).
		f := d.finding("accept-queue-overflow", Critical, l)
		if drops == 0 {
			f = d.finding("accept-queue-full", Warning, l)
		}
		e := f.Evidence
		e["backlog"], e["accept_queue_peak"], e["listener_drops"] = int64(l.Backlog), int64(peak), drops
		e["ListenOverflows"] = d.moved["ListenOverflows"]
		e["windows"], e["windows_full"], e["refreshes_full"] = int64(d.o.Windows), int64(d.o.FullWindows[k]), int64(d.o.FullAtRefresh[k])
		f.Why = "The accept queue held backlog+1 finished handshakes, so the kernel dropped further SYNs " +
			"(tcp_conn_request()) or final ACKs (tcp_check_req()); clients retransmit and wait. The drop " +
			"count is in packets: every retransmitted SYN counts again."
		slow := d.o.Windows > 0 && float64(d.o.FullAtRefresh[k]) >= 0.8*float64(d.o.Windows)
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
		if slow {
			f.Summary = fmt.Sprintf("accept queue stays full (%d/%d): the application accepts too slowly for its arrival rate", peak, l.Backlog)
			f.Advice = "Accept faster: more accepting threads or workers, or find what blocks the accept loop of the " +
				"process shown. A bigger backlog only delays the drops while arrivals outpace accept()."
		} else {
			f.Summary = fmt.Sprintf("accept queue overflows in bursts (peak %d/%d): the backlog is too small for them", peak, l.Backlog)
			want := nextPow2(max(int64(l.Backlog)*4, 128))
			f.Advice = fmt.Sprintf("Raise the backlog the application passes to listen() (its setting, e.g. nginx "+
				"`listen ... backlog=%d`) so bursts fit; the kernel caps it at net.core.somaxconn (%d here).", want, somax)
			if somax >= 0 && want > somax {
				f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", want))
			}
		}
		fs = append(fs, f)
	}

	if somax > 0 && int64(l.Backlog) == somax {
		sev := Info
		if drops > 0 {
			sev = Warning
		}
		f := d.finding("backlog-capped-by-somaxconn", sev, l)
		f.Summary = fmt.Sprintf("backlog %d equals net.core.somaxconn: the application's listen() backlog was probably capped", l.Backlog)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["listener_drops"] = int64(l.Backlog), somax, drops
		f.Why = "listen(2) silently caps its backlog at net.core.somaxconn of the namespace, at the time it is " +
			"called (__sys_listen()). Many servers (Go's net.Listen among them) ask for exactly somaxconn."
		f.Advice = "If the application asked for more, raise somaxconn, then restart it (or have it call listen() again): " +
			"existing listeners keep their old cap."
		f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", somax*2))
		fs = append(fs, f)
	}
	return fs
}

// namespace applies the namespace-wide rules.
func (d diag) namespace() []Finding {
	var fs []Finding
	cookies := val(d.ns.Sysctls.TCPSyncookies)
	mv := d.moved
	// The listener with the fullest SYN queue names where a SYN-queue
	// problem is.
	top, topSyn := d.synTop()

	if cookies == 0 && mv["TCPReqQFullDrop"] > 0 {
		f := d.finding("syn-queue-full-no-cookies", Critical, top)
		f.Summary = "the SYN queue is full and SYN cookies are off: SYNs are being dropped"
		f.Evidence["TCPReqQFullDrop"], f.Evidence["ListenDrops"], f.Evidence["tcp_syncookies"] = mv["TCPReqQFullDrop"], mv["ListenDrops"], cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "Half-open handshakes filled the SYN queue to backlog+1 (inet_csk_reqsk_queue_is_full()); with " +
			"tcp_syncookies=0 every further SYN is dropped (TCPReqQFullDrop) and clients wait for retransmits. " +
			"Either a SYN flood or clients whose final ACK is lost or slow."
		f.Advice = "Turn SYN cookies on (they answer SYNs without queueing when the queue is full) and, for legitimate load, raise the backlog."
		f.Command = d.inNetns("sysctl -w net.ipv4.tcp_syncookies=1")
		fs = append(fs, f)
	}

	if mv["SyncookiesSent"] > 0 {
		f := d.finding("syncookies-sent", Warning, top)
		f.Summary = "SYN cookies are being sent: the SYN queue overflows (a flood, or a backlog too small for the handshake rate)"
		f.Evidence["SyncookiesSent"], f.Evidence["TCPReqQFullDoCookies"], f.Evidence["tcp_syncookies"] = mv["SyncookiesSent"], mv["TCPReqQFullDoCookies"], cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "With the SYN queue full the kernel answers with a SYN cookie instead of queueing (tcp_syn_flood_action()). " +
			"Connections still succeed, but a cookie handshake keeps only what fits in the cookie: without TCP timestamps " +
			"it loses window scaling and SACK, and every cookie costs a hash on both SYN and ACK."
		f.Advice = "If it is a flood, filter it before the host (SYN proxy, rate limits). If the load is legitimate, raise the listen() backlog and tcp_max_syn_backlog so handshakes queue."
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

	if top != nil && topSyn > top.Backlog && mv["TCPReqQFullDrop"] == 0 && mv["SyncookiesSent"] == 0 {
		f := d.finding("syn-queue-full", Warning, top)
		f.Summary = fmt.Sprintf("the SYN queue is full (%d/%d): the next SYNs get cookies or are dropped", topSyn, top.Backlog)
		f.Evidence["tcp_syncookies"] = cookies
		d.synEvidence(f.Evidence, top, topSyn)
		f.Why = "backlog+1 handshakes are half-open: their final ACKs have not arrived (a flood, lossy or " +
			"slow clients). Nothing is counted until the next SYN arrives; then it is answered with a cookie " +
			"or, with tcp_syncookies=0, dropped."
		f.Advice = "Find the peers that do not finish their handshakes (ss -n state syn-recv); for legitimate load raise the listen() backlog."
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
		if p := max(d.o.PeakSyn[l.Key()], l.SynQueue); p > best {
			top, best = l, p
		}
	}
	return top, best
}

func (d diag) synEvidence(e map[string]int64, top *snapshot.Listener, peak uint32) {
	if top != nil {
		e["syn_queue_peak"], e["backlog"] = int64(peak), int64(top.Backlog)
	}
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
