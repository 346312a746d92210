package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var vethCounter atomic.Uint64

// Veth joins a and b with a veth pair, gives each end its address, makes
// each end's address a permanent neighbour of the other and sets both up.
// IPv6 addresses get IFA_F_NODAD so they are usable at once. Veth returns
// once both ends can transmit. The pair disappears with either namespace.
func Veth(a, b *Namespace, aAddr, bAddr netip.Prefix) error {
	if a == nil || b == nil || a.Path == b.Path {
		return errors.New("lab: veth: need two different namespaces")
	}
	for _, p := range []netip.Prefix{aAddr, bAddr} {
		if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("lab: veth: invalid address %s", p)
		}
	}
	// Names only need to be unique inside each private namespace; a
	// process-wide counter keeps them short (IFNAMSIZ is 16).
	n := vethCounter.Add(1)
	aName, bName := fmt.Sprintf("lab%da", n), fmt.Sprintf("lab%db", n)
	if err := veth(a, b, aName, bName, aAddr, bAddr); err != nil {
		return fmt.Errorf("lab: veth %s@%s - %s@%s: %w", aName, a.Name, bName, b.Name, err)
	}
	return nil
}

func veth(a, b *Namespace, aName, bName string, aAddr, bAddr netip.Prefix) error {
	ha, err := a.netlinkHandle()
	if err != nil {
		return err
	}
	defer ha.Close()
	hb, err := b.netlinkHandle()
	if err != nil {
		return err
	}
	defer hb.Close()

	bfd, err := unix.Open(b.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", b.Path, err)
	}
	defer unix.Close(bfd)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = aName
	// The peer is created directly in b (IFLA_NET_NS_FD in the peer info).
	pair := &netlink.Veth{LinkAttrs: attrs, PeerName: bName, PeerNamespace: netlink.NsFd(bfd)}
	if err := ha.LinkAdd(pair); err != nil {
		return fmt.Errorf("add link: %w", err)
	}
	if err := setupPair(ha, hb, aName, bName, aAddr, bAddr); err != nil {
		return errors.Join(err, ha.LinkDel(pair))
	}
	return nil
}

func setupPair(ha, hb *netlink.Handle, aName, bName string, aAddr, bAddr netip.Prefix) error {
	la, err := setupLink(ha, aName, aAddr)
	if err != nil {
		return err
	}
	lb, err := setupLink(hb, bName, bAddr)
	if err != nil {
		return err
	}
	if aAddr.Addr().Is4() == bAddr.Addr().Is4() {
		if err := addNeighbor(ha, la, bAddr.Addr(), lb.Attrs().HardwareAddr); err != nil {
			return err
		}
		if err := addNeighbor(hb, lb, aAddr.Addr(), la.Attrs().HardwareAddr); err != nil {
			return err
		}
	}
	if err := waitReady(ha, aName, aAddr.Addr()); err != nil {
		return err
	}
	return waitReady(hb, bName, bAddr.Addr())
}

func setupLink(h *netlink.Handle, name string, p netip.Prefix) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return nil, fmt.Errorf("add address %s to %s: %w", p, name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set link %s up: %w", name, err)
	}
	return l, nil
}

// addNeighbor makes the peer's address permanently resolved. Clients then
// never wait on ARP or neighbour discovery, whose queue of unresolved
// packets (unres_qlen_bytes) would silently drop part of a burst of SYNs,
// and whose first IPv6 solicitation was seen lost on fresh pairs (1 s delay).
func addNeighbor(h *netlink.Handle, l netlink.Link, ip netip.Addr, mac net.HardwareAddr) error {
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	n := &netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("add neighbour %s on %s: %w", ip, l.Attrs().Name, err)
	}
	return nil
}

// readyTimeout bounds waitReady; linkwatch runs at least once a second.
const readyTimeout = 5 * time.Second

// waitReady waits until the link transmits and its address is local; both
// happen asynchronously after the link is set up, and packets sent before
// are lost (connects then took 1-2 s):
//
//   - The end set up first gets its carrier when the peer comes up, but its
//     transmit queues stay on the noop qdisc until linkwatch runs
//     (linkwatch_do_dev sets the operstate up, then calls dev_activate).
//     RTM_GETLINK runs pending linkwatch work (linkwatch_sync_dev in
//     rtnl_getlink), so polling the operstate also hurries it.
//   - An IPv6 address, even with nodad, gets its local route only when
//     addrconf's work completes DAD (addrconf_dad_completed); until then
//     packets to it count as Ip6InNoRoutes.
func waitReady(h *netlink.Handle, name string, addr netip.Addr) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ready, err := linkReady(h, name, addr)
		if err != nil || ready {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s with %s is not ready after %v", name, addr, readyTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func linkReady(h *netlink.Handle, name string, addr netip.Addr) (bool, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("find link %s: %w", name, err)
	}
	if l.Attrs().OperState != netlink.OperUp {
		return false, nil
	}
	routes, err := h.RouteGet(addr.AsSlice())
	if err != nil {
		return false, fmt.Errorf("route to %s: %w", addr, err)
	}
	return len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL, nil
}

// netlinkHandle returns a route netlink handle whose socket lives in ns.
func (ns *Namespace) netlinkHandle() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := ns.Do(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns.Name, err)
	}
	return h, nil
}
