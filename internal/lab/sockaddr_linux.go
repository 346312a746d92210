package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// family is the socket family for addr: v4-mapped v6 addresses use AF_INET6.
func family(addr netip.Addr) int {
	if addr.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sockaddr converts ap to a unix.Sockaddr. A zone is resolved in the
// calling thread's namespace, so call it from inside Namespace.Do.
func sockaddr(ap netip.AddrPort) (unix.Sockaddr, error) {
	addr := ap.Addr()
	if addr.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: addr.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: addr.As16()}
	if zone := addr.Zone(); zone != "" {
		if id, err := strconv.ParseUint(zone, 10, 32); err == nil {
			sa.ZoneId = uint32(id)
		} else {
			ifi, err := net.InterfaceByName(zone)
			if err != nil {
				return nil, fmt.Errorf("zone %s: %w", zone, err)
			}
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa, nil
}

// addrPort converts a socket address from getsockname.
func addrPort(sa unix.Sockaddr) (netip.Addr, uint16, error) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), uint16(sa.Port), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr), uint16(sa.Port), nil
	}
	return netip.Addr{}, 0, fmt.Errorf("unexpected socket address %T", sa)
}
