package lab

import (
	"fmt"
	"strings"
	"time"
)

// SynRetransmits returns when a client retransmits an unanswered SYN,
// counted from the first, the first n of them. The retransmission timeout
// starts at 1 s (TCP_TIMEOUT_INIT) and doubles at each expiry
// (tcp_retransmit_timer()); with net.ipv4.tcp_syn_linear_timeouts=linear
// (Linux 6.5+, default 4) the first linear+1 timeouts stay at 1 s and only
// then double: 1, 2, 3, 4, 5, 7, 11 s for 4. linear < 0 is a kernel
// without the sysctl: 1, 3, 7, 15 s, as with 0.
func SynRetransmits(linear, n int) []time.Duration {
	var at []time.Duration
	rto, t := time.Second, time.Duration(0)
	for i := range n {
		t += rto
		at = append(at, t)
		if i >= linear {
			rto *= 2
		}
	}
	return at
}

// SynRetransmitText says, for a person, when clients retransmit their SYN
// under linear (SynRetransmits; < 0: the kernel has no
// tcp_syn_linear_timeouts).
func SynRetransmitText(linear int) string {
	var secs []string
	for _, d := range SynRetransmits(linear, max(4, linear+3)) {
		secs = append(secs, fmt.Sprint(int(d.Seconds())))
	}
	when := strings.Join(secs, ", ") + " s after it"
	if linear < 0 {
		return when + " (exponential backoff: this kernel has no net.ipv4.tcp_syn_linear_timeouts, which Linux 6.5 added)"
	}
	return fmt.Sprintf("%s (net.ipv4.tcp_syn_linear_timeouts=%d in the clients' namespace: the first %d a second apart, then doubling)",
		when, linear, linear+1)
}
