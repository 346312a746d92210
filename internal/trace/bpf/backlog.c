// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// backlog trace: every dropped handshake on a TCP listener, with its stage,
// and how long accepted connections waited in the accept queue.
//
// Hook points (docs/trace.md says why each one):
//   consume_skb          the SYN a listener processed; tcp_rcv_state_process()
//                        frees every SYN it hands to tcp_conn_request() with
//                        consume_skb, dropped or not, so kfree_skb never sees
//                        SYN-time drops.
//   net_dev_queue        the SYN-ACK tcp_conn_request() sent for that SYN, if
//                        any, on the same CPU before the SYN is freed; one
//                        without a socket is a SYN cookie (tcp_make_synack(),
//                        TCP_SYNACK_COOKIE). A SYN without one was dropped.
//   tcp_v4_syn_recv_sock the final ACK (or a SYN cookie's ACK) of a handshake
//   tcp_v6_syn_recv_sock that meets a full accept queue: the function's first
//   (fentry)             test, counted in ListenOverflows. Exact on every
//                        kernel whose BPF trampolines are allowed.
//   kfree_skb            where fentry is refused, the final ACK dropped with
//                        SKB_DROP_REASON_TCP_LISTEN_OVERFLOW (tcp_check_req(),
//                        Linux 6.15+), or a SYN cookie's ACK dropped with
//                        NO_SOCKET while the accept queue is full
//                        (cookie_v4_check()).
//   tcp_conn_request     the SO_REUSEPORT member a SYN reached (fentry, where
//   (fentry)             trampolines are allowed); elsewhere the member is the
//                        only one whose sk_drops rose, or the only one that
//                        meets the drop condition, or unknown (counted as
//                        ambiguous, never guessed).
//   inet_sock_set_state  listeners appearing and going (a listener closing
//                        with connections queued resets them), and children
//                        becoming ESTABLISHED in the accept queue.
//   inet_csk_accept      a child leaving the accept queue, on every accept
//   (fexit)              path: accept(2), accept4(2), io_uring.
//   sys_exit             where fexit is refused, accept(2)/accept4(2)
//                        returning a child (io_uring is not seen); connect(2)
//                        on a UNIX socket failing with EAGAIN: the listener's
//                        queue was full (unix_stream_connect(),
//                        unix_recvq_full()). The kernel has no tracepoint in
//                        af_unix; this is the hook that loads without
//                        kprobes or fentry.
//   sys_enter            connect(2)'s descriptor and address, for sys_exit.
//   iter/tcp             the listeners that existed before the trace started.
//
// Each program exists as tp_btf (preferred) and raw_tp (fallback); their
// bodies are the same functions, reading kernel memory with CO-RE.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

// Stages; the same numbers as trace.Stage in Go.
#define STAGE_SYN 1         // accept queue full when the SYN arrived
#define STAGE_SYN_QUEUE 2   // SYN queue full, no cookies (TCPReqQFullDrop)
#define STAGE_ACK 3         // accept queue full when the final ACK arrived
#define STAGE_COOKIE 4      // SYN answered with a cookie (SyncookiesSent)
#define STAGE_SYN_BACKLOG 5 // last quarter of tcp_max_syn_backlog, no cookies
#define STAGE_CLOSE 6       // the listener closed with connections queued or half-open

#define MAX_MEMBERS 32 // SO_REUSEPORT members examined per group (power of two)

#define HIST_SLOTS 128

// Set by the loader before loading.
volatile const bool filter_ports = false;
volatile const bool filter_netns = false;
volatile const bool accept_at_exit = true; // finish accept waits at sys_exit (no fexit)
volatile const u64 nr_accept = 43;   // __NR_accept, x86_64
volatile const u64 nr_accept4 = 288; // __NR_accept4, x86_64
volatile const u64 nr_connect = 42;  // __NR_connect, x86_64
volatile const u64 nr_listen = 50;   // __NR_listen, x86_64
volatile const bool unix_at_syscalls = true; // UNIX connects refused with EAGAIN, from sys_enter/sys_exit
volatile const bool listen_at_enter = true;  // listen(2)'s backlog, from sys_enter
// inet_csk_reqsk_queue_is_full() was qlen >= backlog until upstream
// 3479c7549fb1 (v6.13, backported to stable in 2025), qlen > backlog since.
// User space probes which rule this kernel has.
volatile const bool synq_full_at_backlog = false;

// A listener: its namespace, bound address and port.
struct lkey {
	u32 netns;
	u16 port; // host order
	u8 family;
	u8 pad;
	u8 addr[16];
};

// A listening socket the trace follows (key: its struct sock *). Members
// of an SO_REUSEPORT group share the lkey and each have their own entry.
struct member {
	struct lkey k;
	u64 ino; // socket inode, so user space can find owners
	u32 pid; // process that called listen(2); 0 if it predates the trace
	s32 requested;      // listen(2)'s backlog argument, before somaxconn caps it
	u8 requested_known; // the listen(2) call was seen (sys_enter)
	u8 pad[7];
	char comm[16];
};

struct event {
	u64 ts_ns;
	u64 ino;
	u32 netns;
	u32 pid;
	u32 accept_queue; // sk_ack_backlog
	u32 syn_queue;    // icsk_accept_queue.qlen
	u32 backlog;      // sk_max_ack_backlog
	u16 lport;
	u16 rport;
	u8 stage;
	u8 family;  // of the packet
	u8 lfamily; // of the listener
	u8 migrated; // STAGE_CLOSE: the connections moved to another member
	u8 pad[4];
	u8 laddr[16]; // listener's bound address
	u8 daddr[16]; // address the packet was sent to
	u8 raddr[16]; // peer
	char comm[16];
};

// Keeps struct event in the BTF for bpf2go -type event (the ring buffer
// holds raw bytes; Go decodes them with length checks).
const struct event *unused_event __attribute__((unused));

// The last SYN-ACK this CPU sent. A SYN is processed start to end in one
// softirq on one CPU, so a SYN-ACK for it is recorded here before the SYN
// reaches consume_skb.
struct synack {
	// The SYN fentry on tcp_conn_request() saw this CPU handle when the
	// SYN-ACK left (0: unknown). Checked with the ports and sequence, it
	// spares the SYN's consume_skb a full parse and listener look-up.
	u64 syn_skb;
	u32 ack_seq; // host order
	u16 sport;   // listener side, host order
	u16 dport;   // peer side, host order
	u8 valid;
	u8 cookie; // sent without a socket: TCP_SYNACK_COOKIE
	u8 family;
	u8 pad;
	u8 saddr[16];
	u8 daddr[16];
};

// Accept waits are kept per listening socket: its address and inode.
struct wkey {
	struct lkey k;
	u64 ino;
};

struct hist {
	u64 slots[HIST_SLOTS];
	u64 count;
	u64 sum_ns;
	u64 max_ns;
};

// One listening socket per address (any member of an SO_REUSEPORT group:
// the others are found through its sk_reuseport_cb).
// An address's listening sockets: one of them (sk), and another member of
// its SO_REUSEPORT group (alt, 0 if none known). A socket that closes
// without migration leaves its group before the trace sees it close
// (inet_unhash(), reuseport_detach_sock()), so the next one must be known
// already. Preallocated: an update from a tracepoint must not fail for
// memory.
struct lrep {
	u64 sk;
	u64 alt;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lkey);
	__type(value, struct lrep);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u64); // struct sock *
	__type(value, struct member);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64); // pid_tgid
	__type(value, s32);
} listen_args SEC(".maps");

// The listener tcp_conn_request() runs for, per CPU, and the SYN it
// handles: the SYN's consume_skb follows on the same CPU.
struct conn_request {
	u64 skb;
	u64 sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct conn_request);
} conn_request SEC(".maps");

// Whether the accept queue was full when tcp_v4/v6_syn_recv_sock() began,
// per CPU, for the final ACK it handles: its fexit, on the same CPU,
// decides.
struct ack_entry {
	u64 skb;
	u64 full;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct ack_entry);
} ack_entry SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u16);
	__type(value, u8);
} want_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u8);
} want_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct synack);
} last_synack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct wkey);
	__type(value, struct hist);
} waits SEC(".maps");

// Counters for the summary: 0 events lost (ring buffer full), 1 SYNs that
// got no SYN-ACK at once yet met no drop condition (a SYN-ACK waiting for
// ARP/ND, a security module's refusal, a failed allocation), 2 events whose
// SO_REUSEPORT member could not be told (several met the condition).
#define COUNT_LOST 0
#define COUNT_UNMATCHED 1
#define COUNT_AMBIGUOUS 2
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static const struct hist zero_hist;

static __always_inline void count(u32 i)
{
	u64 *c = bpf_map_lookup_elem(&counters, &i);
	if (c)
		*c += 1;
}

static __always_inline u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

// The namespace of a received skb at free time: tcp_v4_rcv() has cleared
// skb->dev, but the input route still names the device.
static __always_inline u32 rx_netns(struct sk_buff *skb)
{
	unsigned long refdst = BPF_CORE_READ(skb, _skb_refdst);
	struct dst_entry *dst = (struct dst_entry *)(refdst & ~1UL); // SKB_DST_NOREF
	if (!dst)
		return 0;
	return BPF_CORE_READ(dst, dev, nd_net.net, ns.inum);
}

// A TCP segment's addresses, ports and flags, read from the skb headers.
struct seg {
	u8 family;
	u8 flags;
	u16 sport; // host order
	u16 dport;
	u32 seq; // host order
	u32 ack_seq;
	u8 saddr[16];
	u8 daddr[16];
};

// Where an skb's headers are. The tp_btf programs read these fields with
// plain loads (HDRS_BTF), the raw_tp ones with probe reads (HDRS_CORE).
struct hdrs {
	unsigned char *head;
	u16 proto; // network order
	u16 nh;
	u16 th;
};

#define HDRS_BTF(skb)                                                                       \
	((struct hdrs){.head = (skb)->head, .proto = (skb)->protocol, .nh = (skb)->network_header, \
		       .th = (skb)->transport_header})
#define HDRS_CORE(skb)                                                                              \
	((struct hdrs){.head = BPF_CORE_READ(skb, head), .proto = BPF_CORE_READ(skb, protocol),         \
		       .nh = BPF_CORE_READ(skb, network_header), .th = BPF_CORE_READ(skb, transport_header)})

// read_tcp reads a TCP header's ports, sequence numbers and flags.
static __always_inline int read_tcp(const unsigned char *th, struct seg *s)
{
	u8 tcp[14];
	if (bpf_probe_read_kernel(tcp, sizeof(tcp), th))
		return -1;
	s->sport = ((u16)tcp[0] << 8) | tcp[1];
	s->dport = ((u16)tcp[2] << 8) | tcp[3];
	s->seq = ((u32)tcp[4] << 24) | ((u32)tcp[5] << 16) | ((u32)tcp[6] << 8) | tcp[7];
	s->ack_seq = ((u32)tcp[8] << 24) | ((u32)tcp[9] << 16) | ((u32)tcp[10] << 8) | tcp[11];
	s->flags = tcp[13];
	return 0;
}

static __always_inline int parse_tcp(struct hdrs h, struct seg *s)
{
	u16 proto = bpf_ntohs(h.proto);
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return -1;
	unsigned char *head = h.head;
	u16 nh = h.nh, th = h.th;
	if (nh == (u16)~0U || th == (u16)~0U || !head)
		return -1;
	if (proto == ETH_P_IP) {
		u8 ip[20];
		if (bpf_probe_read_kernel(ip, sizeof(ip), head + nh))
			return -1;
		if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP)
			return -1;
		s->family = AF_INET;
		__builtin_memcpy(s->saddr, &ip[12], 4);
		__builtin_memcpy(s->daddr, &ip[16], 4);
	} else {
		u8 ip6[40];
		if (bpf_probe_read_kernel(ip6, sizeof(ip6), head + nh))
			return -1;
		if ((ip6[0] >> 4) != 6)
			return -1;
		// Extension headers: tcp_v6_rcv() reads the TCP header at the
		// transport offset, and so do we; the next-header byte of the
		// fixed header is only checked when there are none.
		if (th == nh + 40 && ip6[6] != IPPROTO_TCP)
			return -1;
		s->family = AF_INET6;
		__builtin_memcpy(s->saddr, &ip6[8], 16);
		__builtin_memcpy(s->daddr, &ip6[24], 16);
	}
	return read_tcp(head + th, s);
}

static __always_inline bool same16(const u8 *a, const u8 *b)
{
	u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

static __always_inline bool wanted(u32 netns, u16 port)
{
	if (filter_netns && !bpf_map_lookup_elem(&want_netns, &netns))
		return false;
	if (filter_ports && !bpf_map_lookup_elem(&want_ports, &port))
		return false;
	return true;
}

// find_listener finds the listener a segment to (netns, addr, port) reaches,
// as __inet_lookup_listener() would: the exact address before the wildcard,
// IPv4 before a dual-stack IPv6 socket. It returns one socket of the
// address; SO_REUSEPORT members are found from it (for_members).
static __always_inline struct lrep *find_listener(u32 netns, u8 family, const u8 *addr, u16 port, struct lkey *k)
{
	struct lrep *v;
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->port = port;
	k->family = family;
	if (family == AF_INET) {
		__builtin_memcpy(k->addr, addr, 4);
		if ((v = bpf_map_lookup_elem(&listeners, k)))
			return v;
		__builtin_memset(k->addr, 0, 4);
		if ((v = bpf_map_lookup_elem(&listeners, k)))
			return v;
		// A v6 socket bound to ::ffff:a.b.c.d or to :: takes IPv4 too.
		k->family = AF_INET6;
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		__builtin_memcpy(&k->addr[12], addr, 4);
		if ((v = bpf_map_lookup_elem(&listeners, k)))
			return v;
		__builtin_memset(k->addr, 0, 16);
		return bpf_map_lookup_elem(&listeners, k);
	}
	__builtin_memcpy(k->addr, addr, 16);
	if ((v = bpf_map_lookup_elem(&listeners, k)))
		return v;
	__builtin_memset(k->addr, 0, 16);
	return bpf_map_lookup_elem(&listeners, k);
}

// The members of sk's SO_REUSEPORT group: the kernel's own array
// (struct sock_reuseport, sk->sk_reuseport_cb), listening ones first
// (num_socks); sk alone when it is in no group.
// A group larger than MAX_MEMBERS is examined only in part: *all is false
// then, and one matching member is no proof.
static __always_inline struct sock_reuseport *group_of(const struct sock *sk, u32 *n, bool *all)
{
	struct sock_reuseport *reuse = BPF_CORE_READ(sk, sk_reuseport_cb);
	*n = reuse ? BPF_CORE_READ(reuse, num_socks) : 1;
	*all = *n <= MAX_MEMBERS;
	if (*n > MAX_MEMBERS)
		*n = MAX_MEMBERS;
	return reuse;
}

static __always_inline struct sock *member_at(struct sock_reuseport *reuse, const struct sock *sk, u32 i)
{
	struct sock *m = NULL;
	if (!reuse)
		return (struct sock *)sk;
	bpf_probe_read_kernel(&m, sizeof(m), &reuse->socks[i & (MAX_MEMBERS - 1)]);
	return m;
}

// emit reports a packet s from a peer to listener sk (m: what the trace
// knows of it; NULL when the SO_REUSEPORT member is unknown, then k names
// the address).
static __always_inline void emit(u8 stage, const struct lkey *k, const struct sock *sk, const struct member *m,
				 const struct seg *s)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNT_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->ino = m ? m->ino : 0;
	e->netns = k->netns;
	e->pid = m ? m->pid : 0;
	e->accept_queue = BPF_CORE_READ(sk, sk_ack_backlog);
	e->syn_queue = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
	e->backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	e->lport = k->port;
	e->stage = stage;
	e->family = s->family;
	e->lfamily = k->family;
	e->migrated = 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__builtin_memcpy(e->laddr, k->addr, 16);
	e->rport = s->sport;
	__builtin_memcpy(e->daddr, s->daddr, 16);
	__builtin_memcpy(e->raddr, s->saddr, 16);
	if (m)
		__builtin_memcpy(e->comm, m->comm, sizeof(e->comm));
	else
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

// emit_member reports on listener sk, an exactly known member.
static __always_inline void emit_member(u8 stage, const struct sock *sk, const struct seg *s)
{
	u64 key = (u64)sk;
	struct member *m = bpf_map_lookup_elem(&socks, &key);
	if (m)
		emit(stage, &m->k, sk, m, s);
}

// --- SYN time -------------------------------------------------------------

// What this CPU last saw of an SO_REUSEPORT group's members' sk_drops.
struct seen_drops {
	u64 sk[MAX_MEMBERS];
	u32 drops[MAX_MEMBERS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, u64); // struct sock_reuseport *
	__type(value, struct seen_drops);
} seen_drops SEC(".maps");

static const struct seen_drops zero_seen;

#define FLAG_COOKIE (1ULL << 40) // a SYN would get a cookie here
#define FLAG_FULL (1ULL << 41)   // accept queue full: sk_acceptq_is_full()

// member_flags is what listener skp's state says about a SYN or an ACK
// reaching it now: its sk_drops (bits 0-31), the stage a SYN that got no
// SYN-ACK met there (bits 32-39, tcp_conn_request()'s tests in its order;
// 0: none), FLAG_COOKIE and FLAG_FULL. A global function: the verifier
// checks it once, not once per member of a loop.
__noinline u64 member_flags(u64 skp, u32 syncookies, int msb)
{
	struct sock *sk = (struct sock *)skp;
	if (!sk)
		return 0;
	u32 qlen = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
	u32 max = BPF_CORE_READ(sk, sk_max_ack_backlog);
	u32 acceptq = BPF_CORE_READ(sk, sk_ack_backlog);
	u64 f = BPF_CORE_READ(sk, sk_drops.counter) & 0xffffffffULL;
	bool synq_full = synq_full_at_backlog ? qlen >= max : qlen > max; // inet_csk_reqsk_queue_is_full()
	u64 stage = 0;
	if (syncookies == 0 && synq_full)
		stage = STAGE_SYN_QUEUE;
	else if (acceptq > max)
		stage = STAGE_SYN;
	else if (syncookies == 0 && msb - (int)qlen < (msb >> 2))
		stage = STAGE_SYN_BACKLOG;
	f |= stage << 32;
	if (syncookies == 2 || synq_full)
		f |= FLAG_COOKIE;
	if (acceptq > max)
		f |= FLAG_FULL;
	return f;
}

static __always_inline u8 flag_stage(u64 f) { return (f >> 32) & 0xff; }

// Scratch space for on_syn_member()'s loop over a group's members.
struct scan {
	u64 found, fflags; // the first member meeting the condition, its flags
	u64 moved, mflags; // the last member whose sk_drops changed, its flags
	u32 matches, nmoved;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct scan);
} scan SEC(".maps");

// on_syn_member reports a SYN (dropped, or answered with a cookie) that
// reached the address of listener rep. The member it reached is the one
// tcp_conn_request() ran for when fentry tells it. Otherwise, for a drop:
// the member whose sk_drops rose since this CPU last looked at the group
// (tcp_listendrop() bumped it just before the SYN is freed, on this CPU;
// other CPUs' drops can add members to that set, never remove this one),
// when it is the only one. Else the only member meeting the condition.
// Else unknown (event without inode, counted ambiguous) — a guess would
// put drops on the wrong socket.
static __always_inline void on_syn_member(struct sk_buff *skb, const struct lkey *k, const struct sock *rep,
					  const struct seg *s, bool cookie)
{
	u32 zero = 0;
	struct net *net = BPF_CORE_READ(rep, __sk_common.skc_net.net);
	u32 syncookies = BPF_CORE_READ(net, ipv4.sysctl_tcp_syncookies);
	int msb = BPF_CORE_READ(net, ipv4.sysctl_max_syn_backlog);
	struct conn_request *cr = bpf_map_lookup_elem(&conn_request, &zero);
	if (cr && cr->skb == (u64)skb && cr->sk) {
		u64 sk = cr->sk;
		cr->skb = 0;
		u8 stage = cookie ? STAGE_COOKIE : flag_stage(member_flags(sk, syncookies, msb));
		if (!stage) {
			count(COUNT_UNMATCHED);
			return;
		}
		emit_member(stage, (struct sock *)sk, s);
		return;
	}
	u32 n;
	bool all;
	struct sock_reuseport *reuse = group_of(rep, &n, &all);
	struct seen_drops *sd = NULL;
	bool first = false;
	u64 rk = (u64)reuse;
	if (reuse && !cookie && all) {
		sd = bpf_map_lookup_elem(&seen_drops, &rk);
		if (!sd) {
			bpf_map_update_elem(&seen_drops, &rk, &zero_seen, BPF_NOEXIST);
			sd = bpf_map_lookup_elem(&seen_drops, &rk);
			first = true;
		}
	}
	// The loop's results live in map memory, not registers: the verifier
	// does not track their values, so its paths stay few.
	struct scan *sc = bpf_map_lookup_elem(&scan, &zero);
	if (!sc)
		return;
	__builtin_memset(sc, 0, sizeof(*sc));
	for (u32 i = 0; i < MAX_MEMBERS; i++) {
		if (i >= n)
			break;
		u64 m = (u64)member_at(reuse, rep, i);
		u64 f = member_flags(m, syncookies, msb);
		barrier_var(sd); // keep the NULL test before any address arithmetic
		if (sd) {
			u32 j = i & (MAX_MEMBERS - 1);
			if (sd->sk[j] != m || sd->drops[j] != (u32)f) {
				sc->moved = m;
				sc->mflags = f;
				sc->nmoved++;
			}
			sd->sk[j] = m;
			sd->drops[j] = (u32)f;
		}
		if (cookie ? !(f & FLAG_COOKIE) : !flag_stage(f))
			continue;
		if (!sc->matches) {
			sc->found = m;
			sc->fflags = f;
		}
		sc->matches++;
	}
	u64 found = sc->found, moved = sc->moved, fflags = sc->fflags, mflags = sc->mflags;
	u32 matches = sc->matches, nmoved = sc->nmoved;
	if (sd && !first && nmoved == 1 && flag_stage(mflags)) {
		emit_member(flag_stage(mflags), (struct sock *)moved, s);
		return;
	}
	u8 stage = cookie ? STAGE_COOKIE : flag_stage(fflags);
	if (!matches) {
		if (!cookie) {
			count(COUNT_UNMATCHED);
			return;
		}
		// A cookie was sent: the event stands, its member is unknown.
		found = (u64)rep;
	}
	if (matches == 1 && all) {
		struct member *mb = bpf_map_lookup_elem(&socks, &found);
		if (mb) {
			emit(stage, &mb->k, (struct sock *)found, mb, s);
			return;
		}
	}
	count(COUNT_AMBIGUOUS);
	emit(stage, k, (struct sock *)found, NULL, s);
}

// syn_answered says whether the SYN in skb is the one the SYN-ACK in sa
// answered, from the skb pointer tcp_conn_request() handled when that
// SYN-ACK left and the TCP header alone.
static __always_inline bool syn_answered(struct sk_buff *skb, struct hdrs h, const struct synack *sa)
{
	if (!sa->valid || sa->cookie || sa->syn_skb != (u64)skb || !h.head || h.th == (u16)~0U)
		return false;
	struct seg s;
	if (read_tcp(h.head + h.th, &s))
		return false;
	return (s.flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) == TCPF_SYN && sa->sport == s.dport &&
	       sa->dport == s.sport && sa->ack_seq == s.seq + 1;
}

// on_consume runs for skbs that belong to no socket. Sockets' own skbs are
// skipped before (cheaply, in the tp_btf variant): a received SYN is never
// charged to a socket on the listener path.
static __always_inline int on_consume(struct sk_buff *skb, struct hdrs h)
{
	u32 zero = 0;
	struct synack *sa = bpf_map_lookup_elem(&last_synack, &zero);
	if (!sa)
		return 0;
	if (syn_answered(skb, h, sa)) {
		// Queued: nothing was dropped (the usual case, short).
		sa->valid = 0;
		struct conn_request *cr = bpf_map_lookup_elem(&conn_request, &zero);
		if (cr && cr->skb == (u64)skb)
			cr->skb = 0;
		return 0;
	}
	struct seg s = {};
	if (parse_tcp(h, &s) || (s.flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) != TCPF_SYN)
		return 0;
	u32 netns = rx_netns(skb);
	struct lkey k;
	struct lrep *v = find_listener(netns, s.family, s.daddr, s.dport, &k);
	if (!v)
		return 0;
	struct sock *rep = (struct sock *)v->sk;

	// Did this SYN get a SYN-ACK? Then it was queued, or answered with a
	// cookie; nothing was dropped.
	bool answered = sa->valid && sa->family == s.family && sa->sport == s.dport && sa->dport == s.sport &&
			sa->ack_seq == s.seq + 1 && same16(sa->saddr, s.daddr) && same16(sa->daddr, s.saddr);
	bool cookie = sa->cookie;
	sa->valid = 0;
	if (answered) {
		if (cookie) {
			on_syn_member(skb, &k, rep, &s, true);
		} else {
			struct conn_request *cr = bpf_map_lookup_elem(&conn_request, &zero);
			if (cr)
				cr->skb = 0;
		}
		return 0;
	}
	// Dropped: replay tcp_conn_request()'s tests. None of them changed
	// since, on this CPU: the SYN did not touch the queues.
	on_syn_member(skb, &k, rep, &s, false);
	return 0;
}

SEC("fentry/tcp_conn_request")
int BPF_PROG(fentry_tcp_conn_request, struct request_sock_ops *rsk_ops, const struct tcp_request_sock_ops *af_ops,
	     struct sock *sk, struct sk_buff *skb)
{
	u32 zero = 0;
	struct conn_request *cr = bpf_map_lookup_elem(&conn_request, &zero);
	if (cr) {
		cr->skb = (u64)skb;
		cr->sk = (u64)sk;
	}
	return 0;
}

// The tp_btf variants read their arguments with plain loads; the raw_tp
// ones must use probe reads. Both then share one body.
SEC("tp_btf/consume_skb")
int BPF_PROG(tp_btf_consume_skb, struct sk_buff *skb)
{
	if (skb->sk)
		return 0;
	return on_consume(skb, HDRS_BTF(skb));
}

SEC("raw_tp/consume_skb")
int BPF_PROG(raw_tp_consume_skb, struct sk_buff *skb)
{
	if (BPF_CORE_READ(skb, sk))
		return 0;
	return on_consume(skb, HDRS_CORE(skb));
}

// on_xmit runs for skbs that belong to no socket (cookie set) or to a
// request or listening socket: normal SYN-ACKs belong to their request
// socket, fast open ones to the listener, cookie ones to none. Everything
// else is a full socket's traffic, skipped before.
static __always_inline int on_xmit(struct sk_buff *skb, struct hdrs h, bool cookie)
{
	if (cookie && BPF_CORE_READ(skb, skb_iif))
		return 0; // forwarded, not sent by this host
	struct seg s = {};
	if (parse_tcp(h, &s) || (s.flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) != (TCPF_SYN | TCPF_ACK))
		return 0;
	// Record it for the SYN's consume_skb, which follows on this CPU.
	// Nested devices (VLAN, bond) queue it again: same record.
	u32 zero = 0;
	struct synack *sa = bpf_map_lookup_elem(&last_synack, &zero);
	if (sa) {
		struct conn_request *cr = bpf_map_lookup_elem(&conn_request, &zero);
		sa->syn_skb = cr ? cr->skb : 0;
		sa->valid = 1;
		sa->cookie = cookie;
		sa->family = s.family;
		sa->sport = s.sport;
		sa->dport = s.dport;
		sa->ack_seq = s.ack_seq;
		__builtin_memcpy(sa->saddr, s.saddr, 16);
		__builtin_memcpy(sa->daddr, s.daddr, 16);
	}
	return 0;
}

static __always_inline bool synack_owner(u8 state)
{
	return state == TCP_NEW_SYN_RECV || state == TCP_LISTEN;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(tp_btf_net_dev_queue, struct sk_buff *skb)
{
	struct sock *sk = skb->sk;
	if (sk && !synack_owner(sk->__sk_common.skc_state))
		return 0;
	return on_xmit(skb, HDRS_BTF(skb), !sk);
}

SEC("raw_tp/net_dev_queue")
int BPF_PROG(raw_tp_net_dev_queue, struct sk_buff *skb)
{
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (sk && !synack_owner(BPF_CORE_READ(sk, __sk_common.skc_state)))
		return 0;
	return on_xmit(skb, HDRS_CORE(skb), !sk);
}

// A socket's namespace, family, bound address and port, read with plain
// loads in tp_btf programs (skid_btf) and probe reads elsewhere (skid_core).
struct skid {
	u32 netns;
	u16 port;
	u16 proto;
	u8 family;
	u8 addr[16];
};

static __always_inline struct skid skid_btf(const struct sock *sk)
{
	struct skid id = {
		.netns = sk->__sk_common.skc_net.net->ns.inum,
		.port = sk->__sk_common.skc_num,
		.proto = sk->sk_protocol,
		.family = sk->__sk_common.skc_family,
	};
	if (id.family == AF_INET)
		__builtin_memcpy(id.addr, &sk->__sk_common.skc_rcv_saddr, 4);
	else
		__builtin_memcpy(id.addr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
	return id;
}

static __always_inline struct skid skid_core(const struct sock *sk)
{
	struct skid id = {
		.netns = sk_netns(sk),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
		.proto = BPF_CORE_READ(sk, sk_protocol),
		.family = BPF_CORE_READ(sk, __sk_common.skc_family),
	};
	if (id.family == AF_INET) {
		u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(id.addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&id.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	}
	return id;
}

static __always_inline void listener_key(const struct skid *id, struct lkey *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = id->netns;
	k->port = id->port;
	k->family = id->family;
	__builtin_memcpy(k->addr, id->addr, 16);
}

// --- final ACK ------------------------------------------------------------

// tcp_v4_syn_recv_sock() / tcp_v6_syn_recv_sock() begin with
// `if (sk_acceptq_is_full(sk)) goto exit_overflow;`, which counts
// ListenOverflows and returns no child. Another CPU's accept() or child can
// change the queue between the program and that test, so neither end
// decides alone: the overflow is a call that returned NULL (the other
// NULL returns are out of memory or no route, which count ListenDrops
// only) with the queue full at its entry or at its exit.
static __always_inline bool acceptq_full_btf(const struct sock *sk)
{
	return sk->sk_ack_backlog > sk->sk_max_ack_backlog;
}

static __always_inline int ack_enter(const struct sock *sk, struct sk_buff *skb)
{
	u32 zero = 0;
	struct ack_entry *a = bpf_map_lookup_elem(&ack_entry, &zero);
	if (a) {
		a->skb = (u64)skb;
		a->full = acceptq_full_btf(sk);
	}
	return 0;
}

static __always_inline int ack_exit(const struct sock *sk, struct sk_buff *skb, const struct sock *child)
{
	u32 zero = 0;
	struct ack_entry *a = bpf_map_lookup_elem(&ack_entry, &zero);
	if (!a)
		return 0;
	bool entered_full = a->skb == (u64)skb && a->full;
	a->skb = 0;
	if (child)
		return 0;
	struct seg s = {};
	if (parse_tcp(HDRS_BTF(skb), &s))
		return 0;
	if (!entered_full && !acceptq_full_btf(sk)) {
		// Dropped, but not for a full accept queue.
		if (find_listener(sk->__sk_common.skc_net.net->ns.inum, s.family, s.daddr, s.dport, &(struct lkey){}))
			count(COUNT_UNMATCHED);
		return 0;
	}
	emit_member(STAGE_ACK, sk, &s);
	return 0;
}

// An IPv4 packet on a v6 socket goes on to tcp_v4_syn_recv_sock(), which
// is traced itself: the v6 programs skip it.
#define V4_ON_V6(skb) ((skb)->protocol == bpf_htons(ETH_P_IP))

SEC("fentry/tcp_v4_syn_recv_sock")
int BPF_PROG(fentry_tcp_v4_syn_recv_sock, const struct sock *sk, struct sk_buff *skb)
{
	return ack_enter(sk, skb);
}

SEC("fentry/tcp_v6_syn_recv_sock")
int BPF_PROG(fentry_tcp_v6_syn_recv_sock, const struct sock *sk, struct sk_buff *skb)
{
	if (V4_ON_V6(skb))
		return 0;
	return ack_enter(sk, skb);
}

// The functions' arguments: (sk, skb, req, dst, req_unhash, own_req),
// and from Linux 6.19 on, opt_child_init after them; the loader picks the
// pair matching this kernel's BTF, so the return value is read where it is.
SEC("fexit/tcp_v4_syn_recv_sock")
int BPF_PROG(fexit_tcp_v4_syn_recv_sock, const struct sock *sk, struct sk_buff *skb, void *req, void *dst,
	     void *req_unhash, bool *own_req, struct sock *child)
{
	return ack_exit(sk, skb, child);
}

SEC("fexit/tcp_v6_syn_recv_sock")
int BPF_PROG(fexit_tcp_v6_syn_recv_sock, const struct sock *sk, struct sk_buff *skb, void *req, void *dst,
	     void *req_unhash, bool *own_req, struct sock *child)
{
	if (V4_ON_V6(skb))
		return 0;
	return ack_exit(sk, skb, child);
}

SEC("fexit/tcp_v4_syn_recv_sock")
int BPF_PROG(fexit_tcp_v4_syn_recv_sock_init, const struct sock *sk, struct sk_buff *skb, void *req, void *dst,
	     void *req_unhash, bool *own_req, void *opt_child_init, struct sock *child)
{
	return ack_exit(sk, skb, child);
}

SEC("fexit/tcp_v6_syn_recv_sock")
int BPF_PROG(fexit_tcp_v6_syn_recv_sock_init, const struct sock *sk, struct sk_buff *skb, void *req, void *dst,
	     void *req_unhash, bool *own_req, void *opt_child_init, struct sock *child)
{
	if (V4_ON_V6(skb))
		return 0;
	return ack_exit(sk, skb, child);
}

// tcp_check_req() drops the final ACK of a queued request with
// TCP_LISTEN_OVERFLOW (Linux 6.15+). A SYN cookie's ACK finds no request:
// cookie_v4_check() drops it with NO_SOCKET when the child cannot be
// created, which a full accept queue causes. CO-RE resolves both values.
static __always_inline bool reason_overflow(enum skb_drop_reason reason)
{
	return bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW) &&
	       reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_TCP_LISTEN_OVERFLOW);
}

static __always_inline bool reason_nosocket(enum skb_drop_reason reason)
{
	return bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET) &&
	       reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NO_SOCKET);
}

#define listen_drop_reason(r) (reason_overflow(r) || reason_nosocket(r))

static __always_inline bool acceptq_full(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_ack_backlog) > BPF_CORE_READ(sk, sk_max_ack_backlog);
}

// on_kfree reports a final ACK dropped on a full accept queue. rx_sk is
// the listener that dropped it (kfree_skb's fourth argument, Linux 6.11+:
// tcp_v4_rcv() passes the request's rsk_listener); NULL before, when the
// member is the only full one of the group, else unknown.
static __always_inline int on_kfree(struct sk_buff *skb, struct hdrs h, enum skb_drop_reason reason,
				    const struct sock *rx_sk)
{
	struct seg s = {};
	if (parse_tcp(h, &s) || (s.flags & (TCPF_SYN | TCPF_RST | TCPF_ACK)) != TCPF_ACK)
		return 0;
	if (rx_sk) {
		u64 key = (u64)rx_sk;
		struct member *m = bpf_map_lookup_elem(&socks, &key);
		if (!m)
			return 0;
		if (!reason_overflow(reason) && !acceptq_full(rx_sk))
			return 0; // not an overflow: a packet for a closed connection
		emit(STAGE_ACK, &m->k, rx_sk, m, &s);
		return 0;
	}
	struct lkey k;
	struct lrep *v = find_listener(rx_netns(skb), s.family, s.daddr, s.dport, &k);
	if (!v)
		return 0;
	struct sock *rep = (struct sock *)v->sk;
	u32 n;
	bool all;
	struct sock_reuseport *reuse = group_of(rep, &n, &all);
	struct sock *found = NULL;
	u32 matches = 0;
	for (u32 i = 0; i < MAX_MEMBERS; i++) {
		if (i >= n)
			break;
		struct sock *m = member_at(reuse, rep, i);
		if (!(member_flags((u64)m, 0, 0) & FLAG_FULL))
			continue;
		if (++matches > 1)
			break;
		found = m;
	}
	if (!matches) {
		if (!reason_overflow(reason))
			return 0; // not an overflow: a packet for a closed connection
		count(COUNT_AMBIGUOUS);
		emit(STAGE_ACK, &k, rep, NULL, &s);
		return 0;
	}
	if (matches == 1 && all) {
		emit_member(STAGE_ACK, found, &s);
		return 0;
	}
	count(COUNT_AMBIGUOUS);
	emit(STAGE_ACK, &k, found, NULL, &s);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (!listen_drop_reason(reason))
		return 0;
	return on_kfree(skb, HDRS_BTF(skb), reason, NULL);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(tp_btf_kfree_skb_rx_sk, struct sk_buff *skb, void *location, enum skb_drop_reason reason,
	     struct sock *rx_sk)
{
	if (!listen_drop_reason(reason))
		return 0;
	return on_kfree(skb, HDRS_BTF(skb), reason, rx_sk);
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(raw_tp_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (!listen_drop_reason(reason))
		return 0;
	return on_kfree(skb, HDRS_CORE(skb), reason, NULL);
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(raw_tp_kfree_skb_rx_sk, struct sk_buff *skb, void *location, enum skb_drop_reason reason,
	     struct sock *rx_sk)
{
	if (!listen_drop_reason(reason))
		return 0;
	return on_kfree(skb, HDRS_CORE(skb), reason, rx_sk);
}

// --- listeners and accept wait ---------------------------------------------

static __always_inline void add_listener(const struct sock *sk, const struct skid *id, bool current)
{
	if (id->family != AF_INET && id->family != AF_INET6)
		return;
	if (!wanted(id->netns, id->port))
		return;
	struct member m = {};
	listener_key(id, &m.k);
	m.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	if (current) {
		u64 id = bpf_get_current_pid_tgid();
		m.pid = id >> 32;
		bpf_get_current_comm(m.comm, sizeof(m.comm));
		// The backlog this thread passed to listen(2), which __sys_listen()
		// capped at somaxconn before the socket saw it.
		s32 *req = bpf_map_lookup_elem(&listen_args, &id);
		if (req) {
			m.requested = *req;
			m.requested_known = 1;
			bpf_map_delete_elem(&listen_args, &id);
		}
	}
	u64 key = (u64)sk;
	// The iterator must not overwrite what listen(2) recorded meanwhile.
	bpf_map_update_elem(&socks, &key, &m, current ? BPF_ANY : BPF_NOEXIST);
	struct lrep *r = bpf_map_lookup_elem(&listeners, &m.k);
	if (!r) {
		struct lrep nr = {.sk = key};
		bpf_map_update_elem(&listeners, &m.k, &nr, BPF_NOEXIST);
	} else if (r->sk != key && !r->alt) {
		r->alt = key; // a second member of the group
	}
}

// migrates says whether inet_csk_listen_stop() moves sk's queued and
// half-open connections to another member (reuseport_migrate_sock()):
// net.ipv4.tcp_migrate_req (Linux 5.14+) or a migrating BPF program, and
// another member still listening. tcp_set_state() unhashes sk before it
// reports TCP_CLOSE: when it may migrate, reuseport_stop_listen_sock()
// has moved it out of num_socks (into the closed ones) and kept its
// sk_reuseport_cb; otherwise reuseport_detach_sock() cleared that.
static __always_inline bool migrates(const struct sock *sk)
{
	struct sock_reuseport *reuse = BPF_CORE_READ(sk, sk_reuseport_cb);
	if (!reuse || BPF_CORE_READ(reuse, num_socks) < 1)
		return false;
	if (bpf_core_field_exists(struct netns_ipv4, sysctl_tcp_migrate_req) &&
	    BPF_CORE_READ(sk, __sk_common.skc_net.net, ipv4.sysctl_tcp_migrate_req))
		return true;
	struct bpf_prog *prog = BPF_CORE_READ(reuse, prog);
	return prog && BPF_CORE_READ(prog, expected_attach_type) == BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
}

// remove_listener forgets sk, which stops listening. Its address stays
// known through another member of its group, if one remains. Connections
// still in its queues are reported (STAGE_CLOSE): inet_csk_listen_stop()
// resets each queued child (inet_child_forget()), and a half-open one is
// answered with a RST when its final ACK arrives — unless they migrate.
static __always_inline void remove_listener(const struct sock *sk, struct skid *id)
{
	u64 key = (u64)sk;
	struct member *mp = bpf_map_lookup_elem(&socks, &key);
	if (!mp)
		return;
	struct member m = *mp;
	u32 queued = BPF_CORE_READ(sk, sk_ack_backlog);
	u32 half = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
	if (queued || half) {
		struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			__builtin_memset(e, 0, sizeof(*e));
			e->ts_ns = bpf_ktime_get_ns();
			e->ino = m.ino;
			e->netns = m.k.netns;
			e->pid = m.pid;
			e->accept_queue = queued;
			e->syn_queue = half;
			e->backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
			e->lport = m.k.port;
			e->stage = STAGE_CLOSE;
			e->family = m.k.family;
			e->lfamily = m.k.family;
			e->migrated = migrates(sk);
			__builtin_memcpy(e->laddr, m.k.addr, 16);
			__builtin_memcpy(e->daddr, m.k.addr, 16);
			__builtin_memcpy(e->comm, m.comm, sizeof(e->comm));
			bpf_ringbuf_submit(e, 0);
		} else {
			count(COUNT_LOST);
		}
	}
	bpf_map_delete_elem(&socks, &key);
	struct lrep *r = bpf_map_lookup_elem(&listeners, &m.k);
	if (!r)
		return;
	if (r->sk == key) {
		u64 alt = r->alt;
		if (!alt || !bpf_map_lookup_elem(&socks, &alt)) {
			bpf_map_delete_elem(&listeners, &m.k);
			return;
		}
		r->sk = alt;
	} else if (r->alt != key) {
		return;
	}
	// Find the next second member in the group of the one that stays
	// (sk is no longer among its listening members).
	r->alt = 0;
	struct sock *stay = (struct sock *)r->sk;
	u32 n;
	bool all;
	struct sock_reuseport *reuse = group_of(stay, &n, &all);
	for (u32 i = 0; reuse && i < MAX_MEMBERS; i++) {
		if (i >= n)
			break;
		u64 other = (u64)member_at(reuse, stay, i);
		if (other && other != r->sk && other != key && bpf_map_lookup_elem(&socks, &other)) {
			r->alt = other;
			return;
		}
	}
}

// The state changes the trace follows; all others return at once.
#define LISTEN(o, n) ((o) == TCP_CLOSE && (n) == TCP_LISTEN)
#define UNLISTEN(o, n) ((o) == TCP_LISTEN && (n) == TCP_CLOSE)
#define FOLLOWED(o, n) (LISTEN(o, n) || UNLISTEN(o, n))

static __always_inline int on_state(const struct sock *sk, int oldstate, int newstate, struct skid id)
{
	if (id.proto != IPPROTO_TCP)
		return 0; // MPTCP's own listener shadows its TCP one
	if (LISTEN(oldstate, newstate))
		add_listener(sk, &id, true);
	else if (UNLISTEN(oldstate, newstate))
		remove_listener(sk, &id);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (!FOLLOWED(oldstate, newstate))
		return 0;
	return on_state(sk, oldstate, newstate, skid_btf(sk));
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(raw_tp_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (!FOLLOWED(oldstate, newstate))
		return 0;
	return on_state(sk, oldstate, newstate, skid_core(sk));
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

// slot: four slots per power of two of microseconds (trace.slotBounds in Go).
static __always_inline u32 slot(u64 ns)
{
	u64 us = ns / 1000;
	if (us < 4)
		return us;
	u32 e = log2_u64(us);
	u32 s = 4 * (e - 1) + ((us >> (e - 2)) & 3);
	return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

// on_accept runs when listener sk handed child to an accept: the wait
// since the child entered the accept queue goes to sk's histogram.
//
// That start is a time the kernel keeps in the child itself: for a child
// in SYN_RECV, tcp_rcv_state_process() -> tcp_init_transfer() ->
// tcp_init_buffer_space() refreshes tcp_mstamp (tcp_clock_us(): the
// microsecond of ktime_get_ns()) and copies it to rcvq_space.time, just
// after tcp_check_req() queued the child; tcp_fastopen_create_child() does
// the same at the SYN for a fast open child, queued then. Only
// tcp_rcv_space_adjust() writes it again, when the socket is read: not
// before its accept, unless a sockmap reads the child first.
static __always_inline int on_accept(u64 sk, u64 child)
{
	struct member *m = bpf_map_lookup_elem(&socks, &sk);
	if (!m || !child)
		return 0;
	u64 queued_us = BPF_CORE_READ((struct tcp_sock *)child, rcvq_space.time);
	if (!queued_us)
		return 0; // accepted before that ran (on another CPU, or with the child's lock held)
	// From the middle of that microsecond: off by ±0.5 µs, not always long.
	u64 queued = queued_us * 1000 + 500, now = bpf_ktime_get_ns();
	u64 wait = now > queued ? now - queued : 0;
	struct wkey k = {.k = m->k, .ino = m->ino};
	struct hist *h = bpf_map_lookup_elem(&waits, &k);
	if (!h) {
		bpf_map_update_elem(&waits, &k, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&waits, &k);
		if (!h)
			return 0;
	}
	u32 i = slot(wait);
	// Older verifiers (5.10, 6.1) do not follow a bound checked on a copy
	// of the register: mask the index itself, after hiding from the
	// compiler that slot() already bounds it.
	barrier_var(i);
	h->slots[i & (HIST_SLOTS - 1)]++;
	h->count++;
	h->sum_ns += wait;
	if (wait > h->max_ns)
		h->max_ns = wait;
	return 0;
}

// The struct sock * behind descriptor fd of a descriptor table.
static __always_inline u64 fd_sock(struct file **fds, long fd)
{
	struct file *f = NULL;
	if (fd < 0 || fd >= (1 << 20) || bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return (u64)BPF_CORE_READ(sock, sk);
}

// inet_csk_accept() dequeues a child for every accept path (do_accept():
// accept(2), accept4(2), io_uring's IORING_OP_ACCEPT). Its arguments
// changed in Linux 6.10 (struct proto_accept_arg); the loader picks the
// program matching this kernel's BTF.
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_inet_csk_accept, struct sock *sk, int flags, int *err, bool kern, struct sock *ret)
{
	if (!ret)
		return 0;
	return on_accept((u64)sk, (u64)ret);
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_inet_csk_accept_arg, struct sock *sk, struct proto_accept_arg *arg, struct sock *ret)
{
	if (!ret)
		return 0;
	return on_accept((u64)sk, (u64)ret);
}

// Where fexit is refused: accept(2)/accept4(2) returned descriptor ret for
// the listening descriptor lfd. io_uring accepts pass no system call exit.
static __always_inline int on_accept_exit(struct file **fds, long lfd, long ret)
{
	u64 sk = fd_sock(fds, lfd);
	if (!bpf_map_lookup_elem(&socks, &sk))
		return 0; // not a listener the trace follows (a UNIX one, say)
	return on_accept(sk, fd_sock(fds, ret));
}

// --- UNIX connects refused ---------------------------------------------------

#define AF_UNIX 1
#define EAGAIN 11
#define UNIX_PATH 108

// connect(2)'s arguments, from sys_enter to sys_exit of the same thread.
struct connect_args {
	u64 fd;
	u64 addr; // struct sockaddr_un __user *
	u64 addrlen;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64); // pid_tgid
	__type(value, struct connect_args);
} connecting SEC(".maps");

// A UNIX connect refused with EAGAIN: the client, its socket's namespace,
// and the name it asked for. User space finds the listener by that name.
struct unix_event {
	u64 ts_ns;
	u32 pid;     // tgid
	u32 tid;
	u32 netns;   // of the client's socket
	u32 namelen; // bytes of path that came from the caller
	u16 type;    // SOCK_STREAM 1, SOCK_SEQPACKET 5
	u8 pad[6];
	char comm[16];
	u8 path[UNIX_PATH]; // sun_path: a path, or NUL and an abstract name
};

const struct unix_event *unused_unix_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} unix_events SEC(".maps");

static __always_inline int on_connect_enter(u64 fd, u64 addr, u64 addrlen)
{
	u64 id = bpf_get_current_pid_tgid();
	struct connect_args a = {.fd = fd, .addr = addr, .addrlen = addrlen};
	bpf_map_update_elem(&connecting, &id, &a, BPF_ANY);
	return 0;
}

// listen(2)'s backlog, from its entry to the listener's CLOSE→LISTEN in
// the same thread.
static __always_inline int on_listen_enter(s32 backlog)
{
	u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&listen_args, &id, &backlog, BPF_ANY);
	return 0;
}

// unix_refused reports a UNIX connect on socket sk refused with EAGAIN,
// to the name at user address addr of addrlen bytes.
static __always_inline int unix_refused(const struct sock *sk, u64 addr, u64 addrlen)
{
	u32 netns = sk_netns(sk);
	if (filter_netns && !bpf_map_lookup_elem(&want_netns, &netns))
		return 0;
	struct unix_event *e = bpf_ringbuf_reserve(&unix_events, sizeof(*e), 0);
	if (!e) {
		count(COUNT_LOST);
		return 0;
	}
	u64 id = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (u32)id;
	e->netns = netns;
	e->type = BPF_CORE_READ(sk, sk_type);
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__builtin_memset(e->path, 0, sizeof(e->path));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	// sun_path follows the 2-byte family; the caller's length says how much.
	u64 n = addrlen > 2 ? addrlen - 2 : 0;
	if (n > UNIX_PATH)
		n = UNIX_PATH;
	e->namelen = n;
	n &= 127; // for the verifier: n <= UNIX_PATH already
	if (n > 0 && n <= UNIX_PATH)
		bpf_probe_read_user(e->path, n, (void *)(addr + 2));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// connect_refused: connect(2) on descriptor fd of table fds, to the name at
// user address addr, returned -EAGAIN. Only a UNIX stream or seqpacket
// connect to a full listener fails so: at once when non-blocking, after
// SO_SNDTIMEO when blocking (unix_stream_connect()).
static __always_inline int connect_refused(struct file **fds, u64 fd, u64 addr, u64 addrlen)
{
	if (fd >= (1 << 20))
		return 0;
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX)
		return 0;
	return unix_refused(sk, addr, addrlen);
}

// on_connect_exit runs when a system call connect(2) returned ret.
static __always_inline int on_connect_exit(struct file **fds, long ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct connect_args *ap = bpf_map_lookup_elem(&connecting, &id);
	if (!ap)
		return 0;
	struct connect_args a = *ap;
	bpf_map_delete_elem(&connecting, &id);
	if (ret != -EAGAIN)
		return 0;
	return connect_refused(fds, a.fd, a.addr, a.addrlen);
}

// Where trampolines load, connect(2) and listen(2) themselves: the x86-64
// system call entry points, which the system call table calls and so are
// never inlined, else (Debian's 5.10 and 6.1 refuse programs on those)
// __sys_connect() and __sys_listen(). Not __sys_listen_socket(): in
// Debian's 6.12 a program on it did not run for listen(2). io_uring's
// connect calls __sys_connect_file(), none of these: left out, as with
// the system call hooks. No hook on every system call is needed then.
SEC("fexit/__x64_sys_connect")
int BPF_PROG(fexit_x64_sys_connect, const struct pt_regs *regs, long ret)
{
	if (ret != -EAGAIN)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return connect_refused(BPF_CORE_READ(task, files, fdt, fd), regs->di, regs->si, regs->dx);
}

SEC("fexit/__sys_connect")
int BPF_PROG(fexit_sys_connect, int fd, void *uaddr, int addrlen, int ret)
{
	if (ret != -EAGAIN)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return connect_refused(BPF_CORE_READ(task, files, fdt, fd), fd, (u64)uaddr, addrlen);
}

SEC("fentry/__x64_sys_listen")
int BPF_PROG(fentry_x64_sys_listen, const struct pt_regs *regs)
{
	return on_listen_enter(regs->si);
}

SEC("fentry/__sys_listen")
int BPF_PROG(fentry_sys_listen, int fd, int backlog)
{
	return on_listen_enter(backlog);
}

// Every system call of every task passes here: test the number first.
SEC("tp_btf/sys_exit")
int BPF_PROG(tp_btf_sys_exit, struct pt_regs *regs, long ret)
{
	u64 nr = regs->orig_ax;
	// Not bpf_get_current_task_btf(): it came in Linux 5.11.
	struct task_struct *task;
	if (nr == nr_connect && unix_at_syscalls) {
		task = (struct task_struct *)bpf_get_current_task();
		return on_connect_exit(BPF_CORE_READ(task, files, fdt, fd), ret);
	}
	if ((nr != nr_accept && nr != nr_accept4) || ret < 0 || !accept_at_exit)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	return on_accept_exit(BPF_CORE_READ(task, files, fdt, fd), regs->di, ret);
}

SEC("raw_tp/sys_exit")
int BPF_PROG(raw_tp_sys_exit, struct pt_regs *regs, long ret)
{
	u64 nr = BPF_CORE_READ(regs, orig_ax);
	struct task_struct *task;
	if (nr == nr_connect && unix_at_syscalls) {
		task = (struct task_struct *)bpf_get_current_task();
		return on_connect_exit(BPF_CORE_READ(task, files, fdt, fd), ret);
	}
	if ((nr != nr_accept && nr != nr_accept4) || ret < 0 || !accept_at_exit)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	return on_accept_exit(BPF_CORE_READ(task, files, fdt, fd), BPF_CORE_READ(regs, di), ret);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_btf_sys_enter, struct pt_regs *regs, long nr)
{
	if (nr == nr_listen && listen_at_enter)
		return on_listen_enter(regs->si);
	if (nr != nr_connect || !unix_at_syscalls)
		return 0;
	return on_connect_enter(regs->di, regs->si, regs->dx);
}

SEC("raw_tp/sys_enter")
int BPF_PROG(raw_tp_sys_enter, struct pt_regs *regs, long nr)
{
	if (nr == nr_listen && listen_at_enter)
		return on_listen_enter(BPF_CORE_READ(regs, si));
	if (nr != nr_connect || !unix_at_syscalls)
		return 0;
	return on_connect_enter(BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx));
}

// --- start-up state ----------------------------------------------------------

// Run once per namespace (an iterator sees the namespace it was opened in).
SEC("iter/tcp")
int seed_listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	if (BPF_CORE_READ(skc, skc_state) != TCP_LISTEN)
		return 0;
	struct sock *sk = (struct sock *)skc;
	struct skid id = skid_core(sk);
	if (id.proto != IPPROTO_TCP)
		return 0;
	add_listener(sk, &id, false);
	return 0;
}
