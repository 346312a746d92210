package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/procnet"
)

// SynQueueLimit is how many half-open requests the SYN queue of a listener
// with this backlog holds on this kernel: backlog+1, or backlog
// (SynQueueFullAtBacklog).
func SynQueueLimit(backlog int) (int, error) {
	atBacklog, err := SynQueueFullAtBacklog()
	if err != nil {
		return 0, err
	}
	if atBacklog {
		return backlog, nil
	}
	return backlog + 1, nil
}

// SynQueueFullAtBacklog reports whether this kernel's SYN queue is full at
// backlog half-open requests rather than backlog+1.
//
// inet_csk_reqsk_queue_is_full() was `qlen >= sk_max_ack_backlog` until
// upstream 3479c7549fb1 ("tcp/dccp: allow a connection when
// sk_max_ack_backlog is zero", v6.13) made it `>`; stable kernels got it in
// 2025 (Debian's 6.1 and 6.12 have it, Debian's 5.10.223 does not). The
// version number cannot tell, so this probes once per process, in a
// private namespace: a listener with backlog 0 and SYN cookies off either
// takes a connection (new rule) or drops the SYN as TCPReqQFullDrop (old
// rule). It needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
func SynQueueFullAtBacklog() (bool, error) { return probeOnce() }

var probeOnce = sync.OnceValues(probe)

func probe() (bool, error) {
	fail := func(err error) (bool, error) {
		return false, fmt.Errorf("probing the SYN-queue limit in a private namespace: %w", err)
	}
	ns, err := NewNamespace("backlog-probe")
	if err != nil {
		return fail(err)
	}
	defer ns.Close()
	if err := ns.SetSysctl("net.ipv4.tcp_syncookies", "0"); err != nil {
		return fail(err)
	}
	l, err := ns.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	c, err := ns.Dial(netip.AddrPortFrom(l.Addr, l.Port), 1)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	// Loopback handles the SYN at once; the first SYN retransmission
	// comes a second later and would meet the same rule.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		l.SetDeadline(time.Now().Add(50 * time.Millisecond))
		if fd, err := l.Accept(); err == nil {
			unix.Close(fd)
			return false, nil
		}
		var drops uint64
		err := ns.Do(func() error {
			cs, err := procnet.ReadCounters("/proc/self/task", unix.Gettid())
			if cs.TCPReqQFullDrop != nil {
				drops = *cs.TCPReqQFullDrop
			}
			return err
		})
		if err != nil {
			return fail(err)
		}
		if drops > 0 {
			return true, nil
		}
	}
	return fail(errors.New("the probe's connection neither completed nor was dropped within 3 s"))
}
