package lab

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TCP flag bits in byte 13 of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// DropBareACKs drops every TCP segment this namespace sends whose flags,
// among syn|ack|fin|rst|psh, are exactly ack:
//
//	table inet backlog_lab { chain output { type filter hook output priority filter; policy accept;
//	  meta l4proto tcp tcp flags & (syn|ack|fin|rst|psh) == ack drop } }
//
// Clients here complete their handshake while the server never sees the
// final ACK, so its requests stay in the SYN queue. A small write (PSH|ACK)
// still passes, and completes the handshake when the client chooses.
// Calling it again is a no-op.
func (ns *Namespace) DropBareACKs() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return fmt.Errorf("lab: drop bare ACKs in %s: %w", ns.Name, ErrClosed)
	}
	if ns.dropACKs {
		return nil
	}
	if err := dropBareACKs(ns.Path); err != nil {
		return fmt.Errorf("lab: drop bare ACKs in %s: %w", ns.Name, err)
	}
	ns.dropACKs = true
	return nil
}

func dropBareACKs(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	// The lasting socket is created inside the namespace by mdlayher/netlink.
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables connection: %w", err)
	}
	defer c.CloseLasting()

	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "backlog_lab"})
	policy := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name:     "output",
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &policy,
	})
	c.AddRule(&nftables.Rule{
		Table: table,
		Chain: chain,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1,
				Mask: []byte{tcpSYN | tcpACK | tcpFIN | tcpRST | tcpPSH}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpACK}},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
	})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables flush: %w", err)
	}
	return nil
}
