package lab

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func igmp6(ns *Namespace) string {
	var s string
	ns.Do(func() error { b, _ := os.ReadFile("/proc/thread-self/net/igmp6"); s = string(b); return nil })
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "lab") { f := strings.Fields(l); out = append(out, f[2][26:]) }
	}
	return strings.Join(out, ",")
}

func TestProbeVethDelay(t *testing.T) {
	for i := 0; i < 4; i++ {
		for _, pf := range [][2]string{{"2001:db8::1/64", "2001:db8::2/64"}} {
			a := newNamespace(t, "probe-a")
			b := newNamespace(t, "probe-b")
			s0 := time.Now()
			if err := Veth(a, b, netip.MustParsePrefix(pf[0]), netip.MustParsePrefix(pf[1])); err != nil {
				t.Fatal(err)
			}
			vt := time.Since(s0)
			g := ""
			l := mustListen(t, b, netip.AddrPortFrom(netip.MustParsePrefix(pf[1]).Addr(), 0).String(), 4)
			start := time.Now()
			mustDial(t, a, netip.AddrPortFrom(l.Addr, l.Port), 1)
			l.SetDeadline(time.Now().Add(5 * time.Second))
			fd, err := l.Accept()
			t.Log(pf, "veth", vt, "connect", time.Since(start), err, "b groups right after veth:", g)
			unix.Close(fd)
			t.Log(run(t, a, "nstat", "-az", "Icmp6OutNeighborSolicits", "Icmp6InNeighborAdvertisements", "TcpRetransSegs", "Ip6OutDiscards", "Ip6InNoRoutes", "Icmp6InNeighborSolicits", "Icmp6OutNeighborAdvertisements"), igmp6(b), run(t, b, "nstat", "-az", "Icmp6InNeighborSolicits", "Ip6InDiscards", "Ip6InNoRoutes", "TcpRetransSegs", "Icmp6OutNeighborSolicits", "Icmp6OutNeighborAdvertisements", "Icmp6InNeighborAdvertisements"), run(t, a, "ip", "-6", "-s", "neigh"), run(t, b, "ip", "-6", "-s", "neigh"))
		}
	}
}
