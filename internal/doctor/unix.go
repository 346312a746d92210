package doctor

import (
	"fmt"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// unixListener applies the rules of a UNIX-domain listener. Its accept
// queue follows TCP's rule, but a refused connect leaves no trace: no
// counter, no sk_drops. So the queue itself is the evidence.
func (d diag) unixListener(l *snapshot.Listener) []Finding {
	var fs []Finding
	k := l.Key()
	peak := max(d.o.PeakAccept[k], l.AcceptQueue)
	somax := val(d.ns.Sysctls.Somaxconn)
	srv, args := serverOf(l.Processes, d.o.Cmdlines, d.o.GoVersions)
	req := srv.requestedBacklog(args, int64(l.Backlog), somax)

	refused, traced := d.o.unixRefused(l)
	if peak > l.Backlog || refused > 0 {
		// Full when looked at, or refusals seen: connects are refused.
		f := d.finding("unix-accept-queue-full", Warning, l)
		if d.o.FullAtRefresh[k] > 0 || refused > 0 {
			f.Severity = Critical
		}
		e := f.Evidence
		if traced {
			e["refused_connects"] = int64(refused)
		}
		e["backlog"], e["accept_queue_peak"], e["somaxconn"] = int64(l.Backlog), int64(peak), somax
		e["windows"], e["windows_full"], e["refreshes_full"] = int64(d.o.Windows), int64(d.o.FullWindows[k]), int64(d.o.FullAtRefresh[k])
		f.Why = "The UNIX socket's accept queue held backlog+1 connections (unix_recvq_full()), so " +
			"unix_stream_connect() refuses a non-blocking connect with EAGAIN (nginx logs \"connect() to unix:... " +
			"failed (11: Resource temporarily unavailable)\" and answers 502) and makes a blocking one sleep until " +
			"accept() makes room. The kernel counts neither: the queue is the evidence, and with --bpf " +
			"refused_connects counts each EAGAIN."
		slow := d.o.Windows > 0 && float64(d.o.FullAtRefresh[k]) >= 0.8*float64(d.o.Windows)
		want := nextPow2(max(int64(l.Backlog)*4, 128))
		if req.backlog > int64(l.Backlog) {
			want = max(want, req.backlog) // what it asked for, at least
		}
		if slow {
			f.Summary = fmt.Sprintf("UNIX accept queue stays full (%d/%d): connects fail with EAGAIN or wait; the server accepts too slowly", peak, l.Backlog)
			f.Advice = "Accept faster: " + srv.workers + ", or find what blocks them (a paused or stuck pool). " +
				"A bigger backlog (" + srv.backlog(want) + ") only makes clients wait longer while arrivals outpace accept()."
		} else {
			f.Summary = fmt.Sprintf("UNIX accept queue overflows in bursts (peak %d/%d): connects are refused with EAGAIN meanwhile", peak, l.Backlog)
			if refused > 0 {
				f.Summary = fmt.Sprintf("UNIX accept queue overflows in bursts (peak %d/%d): %d connects refused with EAGAIN", peak, l.Backlog, refused)
			}
			f.Advice = fmt.Sprintf("Raise the backlog so bursts fit: %s; the kernel caps it at net.core.somaxconn (%d here).", srv.backlog(want), somax)
		}
		if somax >= 0 && want > somax {
			f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", want))
		}
		d.describe(&f, srv, req)
		fs = append(fs, f)
	}

	if somax > 0 && int64(l.Backlog) == somax && peak > l.Backlog {
		f := d.finding("backlog-capped-by-somaxconn", Warning, l)
		f.Summary = fmt.Sprintf("backlog %d equals net.core.somaxconn: the server's listen() backlog was probably capped", l.Backlog)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["accept_queue_peak"] = int64(l.Backlog), somax, int64(peak)
		f.Why = "listen(2) caps the backlog of UNIX sockets too at net.core.somaxconn of the socket's namespace " +
			"(__sys_listen()), at the time it is called."
		want := max(req.backlog, somax*2)
		f.Advice = "Raise somaxconn, then restart the server (or have it call listen() again) with a larger backlog: " + srv.backlog(want) + "."
		f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", want))
		d.describe(&f, srv, req)
		fs = append(fs, f)
	}
	return fs
}
