#!/bin/sh
# Prints this kernel's row of the feature table in docs/kernels.md, as
# backlog finds it at run time (scripts/kernels.sh compares it with the
# table, in each guest and on the host). Needs root; busybox sh is enough.
#
#   scripts/kernel-facts.sh BACKLOG_BINARY
backlog=${1:-backlog}
# trace's program type, the hook that catches the ack stage, the one that
# ends accept waits, and how a SYN's SO_REUSEPORT member is told.
summary=$("$backlog" trace --json --duration 1s 2>/dev/null | grep '^{"summary"')
programs=$(echo "$summary" | sed -n 's/.*"programs":"\([^"]*\)".*/\1/p')
ack=$(echo "$summary" | sed -n 's/.*"ack_hook":"\([^"]*\)".*/\1/p')
accept=$(echo "$summary" | sed -n 's/.*"accept_hook":"\([^"]*\)".*/\1/p')
member=$(echo "$summary" | sed -n 's/.*"member_hook":"\([^"]*\)".*/\1/p')
[ -n "$ack" ] || ack="none"
[ -n "$programs" ] || programs="none"
[ -n "$accept" ] || accept="none"
[ -n "$member" ] || member="none"

limit=$("$backlog" version | sed -n 's/^SYN queue holds *\([^ ]*\).*/\1/p')

# kfree_skb's drop reasons, from the kernel's BTF strings.
btf=/sys/kernel/btf/vmlinux
if grep -q SKB_DROP_REASON_TCP_LISTEN_OVERFLOW $btf; then
	reason="yes, with TCP_LISTEN_OVERFLOW"
elif grep -q SKB_DROP_REASON_NOT_SPECIFIED $btf; then
	reason=yes
else
	reason=no
fi

linear=no
[ -e /proc/sys/net/ipv4/tcp_syn_linear_timeouts ] && linear=yes

echo "| $programs | $ack | $accept | $member | $limit | $reason | $linear |"
