package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
)

// checkListenAddress says what is wrong with a --web.listen-address before
// anything listens: a malformed address is a usage error, not a busy port.
func checkListenAddress(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err == nil {
		_, err = net.LookupPort("tcp", port) // numbers, or names in /etc/services
	}
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		return usageError{fmt.Errorf("backlog serve: --web.listen-address %q: %v; want host:port such as %s or 127.0.0.1:9871 (see 'backlog serve -h')", a, err, defaultListenAddress)}
	}
	return nil
}

// checkTelemetryPath refuses a --web.telemetry-path that net/http would
// panic on or read as a pattern: it must be a clean absolute path of plain
// URL characters.
func checkTelemetryPath(p string) error {
	bad := func(why string) error {
		return usageError{fmt.Errorf("backlog serve: --web.telemetry-path %q: %s; want a path such as /metrics (see 'backlog serve -h')", p, why)}
	}
	if !strings.HasPrefix(p, "/") {
		return bad("does not start with /")
	}
	for _, r := range p {
		// RFC 3986 pchar and "/", without percent-encoding; no { } (net/http
		// wildcards), no space.
		if !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@/", r))) {
			return bad(fmt.Sprintf("%q is not allowed in it", r))
		}
	}
	if c := path.Clean(p); c != p && c+"/" != p {
		return bad("is not clean (it would be redirected to " + c + ")")
	}
	return nil
}

// openListeners opens every --web.listen-address, or takes systemd's sockets,
// and says in one line what went wrong and what to do.
func openListeners(addrs []string, systemd bool) ([]net.Listener, error) {
	if systemd {
		all, _ := activation.Listeners()
		var ls []net.Listener
		for _, l := range all {
			if l != nil { // nil: not a stream socket
				ls = append(ls, l)
			}
		}
		if len(ls) == 0 {
			return nil, fmt.Errorf("--web.systemd-socket: systemd passed no listening TCP socket to this process (LISTEN_PID, LISTEN_FDS); start it from a .socket unit, or drop the flag and use --web.listen-address")
		}
		return ls, nil
	}
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, listenError(a, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// listenError names the cause of a failed listen and what to do about it.
func listenError(a string, err error) error {
	_, port, _ := net.SplitHostPort(a)
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("--web.listen-address %s: another socket listens there ('ss -ltnp sport = :%s' names it); pick another with --web.listen-address", a, port)
	case errors.Is(err, syscall.EACCES):
		why := "permission denied"
		if start, n := unprivilegedPortStart(), portNumber(port); start > 0 && n > 0 && n < start {
			why = fmt.Sprintf("permission denied: ports below %d (net.ipv4.ip_unprivileged_port_start) need root or CAP_NET_BIND_SERVICE; pick a higher port or grant the capability", start)
		}
		return fmt.Errorf("--web.listen-address %s: %s", a, why)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("--web.listen-address %s: no interface in this network namespace has that address ('ip -br addr' lists them); leave the host out (:%s) to listen on all", a, port)
	case errors.As(err, &dns):
		return fmt.Errorf("--web.listen-address %s: cannot resolve %q: %v; use an IP address", a, dns.Name, dns.Err)
	}
	return fmt.Errorf("--web.listen-address %s: %w", a, err)
}

// unprivilegedPortStart is net.ipv4.ip_unprivileged_port_start of the
// caller's namespace, 0 when unknown.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func portNumber(s string) int {
	n, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0
	}
	return n
}
