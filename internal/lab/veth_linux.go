package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var vethCounter atomic.Uint64

// Veth joins a and b with a veth pair, gives each end its address and sets
// both up. IPv6 addresses get IFA_F_NODAD so they are usable at once.
// The pair disappears when either namespace is destroyed.
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
	if os.Getenv("LABEXP") == "raw" { return nil }
	if os.Getenv("LABEXP") != "wait" {
	if aAddr.Addr().Is4() == bAddr.Addr().Is4() {
		if err := addNeighbor(ha, la, bAddr.Addr(), lb.Attrs().HardwareAddr); err != nil {
			return err
		}
		if err := addNeighbor(hb, lb, aAddr.Addr(), la.Attrs().HardwareAddr); err != nil {
			return err
		}
	}
	}
	if os.Getenv("LABEXP") == "neigh" { return nil }
	if os.Getenv("LABEXP") == "none" {
		l1, _ := ha.LinkByName(aName)
		l2, _ := hb.LinkByName(bName)
		fmt.Println("state now", l1.Attrs().OperState, l2.Attrs().OperState)
		return nil
	}
	if os.Getenv("LABEXP") == "sleep" { time.Sleep(200*time.Microsecond); return nil }
	if err := waitOperUp(ha, aName); err != nil {
		return err
	}
	return waitOperUp(hb, bName)
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

// addNeighbor makes the peer's address permanently resolved, so the first
// packet never waits on ARP or neighbour discovery. Without it, the first
// IPv6 connect over a fresh pair took 1-2 s: neighbour solicitations were
// lost while addrconf's work was still joining the solicited-node group.
func addNeighbor(h *netlink.Handle, l netlink.Link, ip netip.Addr, mac net.HardwareAddr) error {
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	n := &netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("add neighbour %s on %s: %w", ip, l.Attrs().Name, err)
	}
	return nil
}

// linkUpTimeout bounds waitOperUp; linkwatch runs at least once a second.
const linkUpTimeout = 5 * time.Second

// waitOperUp waits for the link's operstate to be up. The first end set up
// has no carrier until its peer is up; linkwatch then sets the operstate and
// activates its transmit queues together (linkwatch_do_dev in
// net/core/link_watch.c). Until then its noop qdisc drops every packet.
func waitOperUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(linkUpTimeout)
	for i := 0; ; i++ {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find link %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			if os.Getenv("LABDEBUG") != "" { fmt.Println("operup", name, i) }
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s is %s after %v, want up", name, l.Attrs().OperState, linkUpTimeout)
		}
		time.Sleep(time.Millisecond)
	}
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
