package doctor

import (
	"fmt"
	"strings"

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
	knob := unixKnob(l.Processes)

	if peak > l.Backlog {
		// Full when looked at: connects are being refused now.
		f := d.finding("unix-accept-queue-full", Warning, l)
		if d.o.FullAtRefresh[k] > 0 {
			f.Severity = Critical
		}
		e := f.Evidence
		e["backlog"], e["accept_queue_peak"], e["somaxconn"] = int64(l.Backlog), int64(peak), somax
		e["windows"], e["windows_full"], e["refreshes_full"] = int64(d.o.Windows), int64(d.o.FullWindows[k]), int64(d.o.FullAtRefresh[k])
		f.Why = "The UNIX socket's accept queue held backlog+1 connections (unix_recvq_full()), so " +
			"unix_stream_connect() refuses a non-blocking connect with EAGAIN (nginx logs \"connect() to unix:... " +
			"failed (11: Resource temporarily unavailable)\" and answers 502) and makes a blocking one sleep until " +
			"accept() makes room. The kernel counts neither: the queue is the only evidence."
		slow := d.o.Windows > 0 && float64(d.o.FullAtRefresh[k]) >= 0.8*float64(d.o.Windows)
		want := nextPow2(max(int64(l.Backlog)*4, 128))
		if slow {
			f.Summary = fmt.Sprintf("UNIX accept queue stays full (%d/%d): connects fail with EAGAIN or wait; the server accepts too slowly", peak, l.Backlog)
			f.Advice = "Accept faster: " + knob.workers + ", or find what blocks them (a paused or stuck pool). " +
				"A bigger backlog (" + knob.backlog(want) + ") only makes clients wait longer while arrivals outpace accept()."
		} else {
			f.Summary = fmt.Sprintf("UNIX accept queue overflows in bursts (peak %d/%d): connects are refused with EAGAIN meanwhile", peak, l.Backlog)
			f.Advice = fmt.Sprintf("Raise the backlog so bursts fit: %s; the kernel caps it at net.core.somaxconn (%d here).", knob.backlog(want), somax)
		}
		if somax >= 0 && want > somax {
			f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", want))
		}
		fs = append(fs, f)
	}

	if somax > 0 && int64(l.Backlog) == somax && peak > l.Backlog {
		f := d.finding("backlog-capped-by-somaxconn", Warning, l)
		f.Summary = fmt.Sprintf("backlog %d equals net.core.somaxconn: the server's listen() backlog was probably capped", l.Backlog)
		f.Evidence["backlog"], f.Evidence["somaxconn"], f.Evidence["accept_queue_peak"] = int64(l.Backlog), somax, int64(peak)
		f.Why = "listen(2) caps the backlog of UNIX sockets too at net.core.somaxconn of the socket's namespace " +
			"(__sys_listen()), at the time it is called."
		f.Advice = "Raise somaxconn, then restart the server (or have it call listen() again) with a larger backlog: " + knob.backlog(somax*2) + "."
		f.Command = d.inNetns(fmt.Sprintf("sysctl -w net.core.somaxconn=%d", somax*2))
		fs = append(fs, f)
	}
	return fs
}

// knob is how a server sets its listen backlog and its accepting capacity.
type knob struct {
	setting string // with %d for the backlog
	workers string
}

func (k knob) backlog(n int64) string { return fmt.Sprintf(k.setting, n) }

// unixKnob picks the owner's own setting from the command names of the
// processes holding the socket.
func unixKnob(ps []snapshot.Process) knob {
	for _, p := range ps {
		c := p.Comm
		switch {
		case strings.HasPrefix(c, "php-fpm"):
			return knob{"php-fpm's `listen.backlog = %d` in the pool's configuration (default 511)",
				"more php-fpm workers (`pm.max_children`, and `pm.start_servers`/`pm.min_spare_servers` for bursts)"}
		case strings.HasPrefix(c, "gunicorn"):
			return knob{"gunicorn's `--backlog %d` (default 2048)", "more gunicorn workers (`--workers`, `--threads`)"}
		case strings.HasPrefix(c, "uwsgi"):
			return knob{"uWSGI's `--listen %d` (default 100; uWSGI refuses to start when it exceeds somaxconn)", "more uWSGI workers (`--processes`, `--threads`)"}
		case strings.HasPrefix(c, "puma"):
			return knob{"puma's `backlog=%d` in the bind URL (`bind 'unix:///path?backlog=N'`)", "more puma workers or threads (`workers`, `threads`)"}
		case c == "systemd" || p.PID == 1:
			return knob{"`Backlog=%d` in the systemd .socket unit (default: somaxconn)", "more instances of the service the socket activates"}
		}
	}
	return knob{"the listen(2) backlog the server passes (its own setting, %d or more)", "more accepting workers or threads in the process shown"}
}
