// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// backlog's iterators: the listen queues of every TCP listener and the
// processes holding them, read in the kernel instead of through sock_diag
// dumps and a readlink per descriptor.
//
//   iter/tcp        the listeners of the namespace the reader is in, with
//                   both queues, drops and the fast-open queue. The
//                   iterator visits the listening hash before the
//                   established one (bpf_iter_tcp_batch()): the program
//                   stops the read at the first socket that is not
//                   listening, so established connections are not visited.
//   iter/task_file  every open file of every process in every namespace;
//                   writes the descriptors holding a listening socket (TCP
//                   or UNIX: both are TCP_LISTEN) and the epoll instances,
//                   and one record per process it visited, so the reader
//                   can tell which processes it missed. It needs nothing
//                   from the reader (no map to fill first), so it runs
//                   while the listeners are read.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

// One listener, as iter/tcp writes it.
struct lrec {
	u32 netns; // inode of the network namespace
	u32 inode; // socket inode, 0 for a socket without a file
	u32 accept_queue;   // sk_ack_backlog
	u32 backlog;        // sk_max_ack_backlog
	u32 drops;          // sk_drops
	u32 syn_queue;      // icsk_accept_queue.qlen: request sockets only
	u32 fastopen_queue; // icsk_accept_queue.fastopenq.qlen
	u16 port;
	u8 family;
	u8 v6only;
	u8 addr[16];
};

// What iter/task_file writes, by kind.
#define OWNER_VISITED 0 // the first descriptor of a process
#define OWNER_SOCKET 1  // a descriptor holding a listening socket
#define OWNER_EPOLL 2   // an epoll instance (what it watches is in fdinfo)

struct orec {
	u32 pid; // thread-group id, as /proc names it
	u32 inode;
	u32 fd;
	u32 kind;
	char comm[16];
};

// Keep the type in the object for bpf2go -type.
const struct orec *unused_owner __attribute__((unused));

// Set by the reader before a read of `listeners` or `queues`: how many TCP
// sockets the namespace has hashed (sockstat's inuse, TCP and TCP6), 0 when
// unknown. When every one of them is a listener, the read ends at the
// last: without it the iterator would walk the machine's whole
// established hash looking for a socket of this namespace after the
// listeners, as many sockets as the host has connections, for nothing.
// That last listener goes into `last_*` (a program that ends the read drops
// its own record). One reader at a time (a lock in the reader).
u32 stop_after = 0;
u32 last_set = 0;
struct lrec last_listener = {};

// stop: this is the last socket the namespace has (meta->seq_num counts
// the sockets shown before this one, the same when a full buffer shows it
// again).
static __always_inline int stop(struct bpf_iter_meta *meta)
{
	return stop_after && meta->seq_num + 1 == stop_after;
}

SEC("iter/tcp")
int listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	if (BPF_CORE_READ(skc, skc_state) != TCP_LISTEN)
		return 1; // past the listening hash: end the read (-EAGAIN)
	struct sock *sk = (struct sock *)skc;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
	struct lrec l = {};
	struct net *net = BPF_CORE_READ(skc, skc_net.net);
	// Not net_cookie: atomic64_t before 5.12, u64 since, and nothing
	// needs it.
	l.netns = BPF_CORE_READ(net, ns.inum);
	l.family = BPF_CORE_READ(skc, skc_family);
	l.port = BPF_CORE_READ(skc, skc_num);
	if (l.family == AF_INET) {
		u32 a = BPF_CORE_READ(skc, skc_rcv_saddr);
		__builtin_memcpy(l.addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&l.addr, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
		l.v6only = BPF_CORE_READ_BITFIELD_PROBED(skc, skc_ipv6only);
	}
	// sock_i_ino(): SOCK_INODE(sk->sk_socket)->i_ino, the inode beside
	// the socket in struct socket_alloc.
	struct socket *so = BPF_CORE_READ(sk, sk_socket);
	if (so) {
		struct inode *ino = (void *)so + bpf_core_field_offset(struct socket_alloc, vfs_inode);
		l.inode = BPF_CORE_READ(ino, i_ino);
	}
	l.accept_queue = BPF_CORE_READ(sk, sk_ack_backlog);
	l.backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
	l.drops = BPF_CORE_READ(sk, sk_drops.counter);
	l.syn_queue = BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
	l.fastopen_queue = BPF_CORE_READ(icsk, icsk_accept_queue.fastopenq.qlen);
	if (stop(ctx->meta)) {
		last_listener = l;
		last_set = 1;
		return 1;
	}
	bpf_seq_write(ctx->meta->seq, &l, sizeof(l));
	return 0;
}

// The last process visited; an iterator program never runs concurrently
// with itself on one reader, and one reader at a time uses this object.
u32 last_pid = 0;

// owners_file writes what one descriptor says; by_helper picks how a
// socket's state is read (see owners and owners_compat).
static __always_inline int owners_file(struct bpf_iter__task_file *ctx, bool by_helper)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	// Direct reads through the BTF pointers (the verifier makes them
	// fault-safe loads): no helper call per descriptor, of which a host
	// may have hundreds of thousands.
	struct orec o = {};
	o.pid = task->tgid;
	if (o.pid != last_pid) {
		o.kind = OWNER_VISITED;
		BPF_CORE_READ_STR_INTO(&o.comm, task, group_leader, comm);
		// When the read's buffer is full the write fails and this file is
		// shown again at the next read (bpf_seq_read()): remember the
		// process only once its record is written. (A record that fit but
		// was dropped with a later one of the same file leaves that later
		// record, from which the reader learns the process too.)
		if (bpf_seq_write(ctx->meta->seq, &o, sizeof(o)) == 0)
			last_pid = o.pid;
	}
	o.fd = ctx->fd;
	if (by_helper) {
		// Sockets first, without their inode: each read here of a cold
		// struct is a cache miss, and a host of connections has one
		// socket a connection. bpf_sock_from_file() (Linux 5.11) returns
		// the struct socket as a BTF pointer, read directly.
		struct socket *so = bpf_sock_from_file(file);
		if (so) {
			// A listener is unconnected (inet_listen() and unix_listen()
			// leave sock->state alone): a connection is rejected without
			// reading its struct sock.
			if (so->state != SS_UNCONNECTED)
				return 0;
			struct sock *sk = so->sk;
			if (!sk || sk->__sk_common.skc_state != TCP_LISTEN)
				return 0;
			// SOCK_INODE(): the inode beside the socket in socket_alloc.
			struct inode *si = (void *)so + bpf_core_field_offset(struct socket_alloc, vfs_inode);
			o.inode = BPF_CORE_READ(si, i_ino);
			o.kind = OWNER_SOCKET;
			bpf_seq_write(ctx->meta->seq, &o, sizeof(o));
			return 0;
		}
	}
	struct inode *ino = file->f_inode;
	if (!ino)
		return 0;
	u32 fmt = ino->i_mode & S_IFMT;
	if (fmt == 0) {
		// An anonymous inode (alloc_anon_inode() sets no file type):
		// epoll instances are named "[eventpoll]" (do_epoll_create()).
		char name[12] = {};
		struct dentry *d = file->f_path.dentry;
		if (!d)
			return 0;
		bpf_probe_read_kernel_str(name, sizeof(name), d->d_name.name);
		const char want_name[12] = "[eventpoll]";
		for (int i = 0; i < 12; i++)
			if (name[i] != want_name[i])
				return 0;
		o.kind = OWNER_EPOLL;
		bpf_seq_write(ctx->meta->seq, &o, sizeof(o));
		return 0;
	}
	if (fmt != S_IFSOCK || by_helper)
		return 0;
	// A socket file's private_data is its struct socket
	// (sock_alloc_file()); a void pointer, read with the helper.
	struct socket *so = file->private_data;
	if (!so || BPF_CORE_READ(so, sk, __sk_common.skc_state) != TCP_LISTEN)
		return 0;
	o.inode = ino->i_ino;
	o.kind = OWNER_SOCKET;
	bpf_seq_write(ctx->meta->seq, &o, sizeof(o));
	return 0;
}

// Every descriptor of every process: a host of 100,000 connections has
// 100,000 sockets to tell from the listeners, and the structs read for
// each (file, inode, socket, sock: owners_compat) were most of the pass.
SEC("iter/task_file")
int owners(struct bpf_iter__task_file *ctx)
{
	return owners_file(ctx, true);
}

// owners for kernels without bpf_sock_from_file() (5.10).
SEC("iter/task_file")
int owners_compat(struct bpf_iter__task_file *ctx)
{
	return owners_file(ctx, false);
}

// One listener's accept queue, for samplers that read many times a second.
struct qrec {
	u32 inode;
	u32 accept_queue; // sk_ack_backlog
};


// Listeners the last read of `queues` visited: it writes only those with a
// non-empty accept queue.
u32 queue_listeners = 0;
struct qrec last_queue = {};

// iter/tcp for samplers: what they need and nothing else, read directly
// through the BTF pointers (no helper call per field), and a record only
// for a listener whose queue is not empty: an absent listener's queue was
// 0.
SEC("iter/tcp")
int queues(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	if (skc->skc_state != TCP_LISTEN)
		return 1; // past the listening hash: end the read (-EAGAIN)
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	queue_listeners = ctx->meta->seq_num + 1;
	struct qrec q = {};
	q.accept_queue = tp->inet_conn.icsk_inet.sk.sk_ack_backlog;
	if (q.accept_queue != 0) {
		struct socket *so = BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_socket);
		if (so) {
			struct inode *ino = (void *)so + bpf_core_field_offset(struct socket_alloc, vfs_inode);
			q.inode = BPF_CORE_READ(ino, i_ino);
		}
	}
	if (stop(ctx->meta)) {
		last_queue = q;
		last_set = 1;
		return 1;
	}
	if (q.accept_queue != 0)
		bpf_seq_write(ctx->meta->seq, &q, sizeof(q));
	return 0;
}
