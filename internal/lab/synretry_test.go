package lab

import (
	"fmt"
	"testing"
)

// TestSynRetransmits: the schedules measured on Linux 6.18 (1, 2, 3, 4, 5,
// 7, 11 s with tcp_syn_linear_timeouts=4; 1, 3, 7, 15 s with 0) and on
// kernels without the sysctl (5.10, 6.1: 1, 3, 7, 15 s).
func TestSynRetransmits(t *testing.T) {
	for _, c := range []struct {
		linear int
		want   string
	}{
		{4, "[1s 2s 3s 4s 5s 7s]"},
		{0, "[1s 3s 7s 15s 31s 1m3s]"},
		{-1, "[1s 3s 7s 15s 31s 1m3s]"},
		{1, "[1s 2s 4s 8s 16s 32s]"},
	} {
		if got := fmt.Sprint(SynRetransmits(c.linear, 6)); got != c.want {
			t.Errorf("linear %d: %s, want %s", c.linear, got, c.want)
		}
	}
	if got := SynRetransmitText(-1); got != "1, 3, 7, 15 s after it (exponential backoff: this kernel has no net.ipv4.tcp_syn_linear_timeouts, which Linux 6.5 added)" {
		t.Errorf("without the sysctl: %q", got)
	}
	if got := SynRetransmitText(4); got != "1, 2, 3, 4, 5, 7, 11 s after it (net.ipv4.tcp_syn_linear_timeouts=4 in the clients' namespace: the first 5 a second apart, then doubling)" {
		t.Errorf("linear 4: %q", got)
	}
}
