package scenario

import "time"

// withDefaults fills the zero fields of p with the scenario's defaults.
func withDefaults(name string, p Params) Params {
	def := Params{Duration: 3 * time.Second}
	switch name {
	case "nobind":
		def.Backlog, def.Duration = 16, time.Second
	case "capped":
		def.Backlog, def.Somaxconn, def.Duration = 10000, 16384, time.Second
	case "overflow":
		def.Backlog, def.Clients = 5, 20
	case "synflood":
		def.Backlog, def.Clients, def.Duration = 16, 50, 2*time.Second
	case "abort":
		def.Backlog, def.Abort, def.Duration = 5, 1, time.Second
	case "unix-overflow":
		def.Backlog, def.Clients, def.Somaxconn, def.Duration = 4, 10, 64, time.Second
	case "reuseport":
		def.Backlog, def.Clients, def.Duration = 4, 30, time.Second
	}
	if p.Backlog == 0 && !p.backlogSet {
		p.Backlog = def.Backlog
	}
	if p.Clients == 0 {
		p.Clients = def.Clients
	}
	if p.Duration == 0 {
		p.Duration = def.Duration
	}
	if p.Somaxconn == 0 {
		p.Somaxconn = def.Somaxconn
	}
	if name == "abort" && p.Abort == 0 && !p.abortSet {
		p.Abort = def.Abort
	}
	p.uses = uses[name]
	return p
}

var explanations = map[string]string{
	"nobind": "listen(2) on a socket that was never bound makes the kernel bind it first " +
		"(inet_autobind()): a free port from the namespace's net.ipv4.ip_local_port_range, " +
		"on the wildcard address.",
	"capped": "listen(2) caps the backlog at the namespace's net.core.somaxconn when it is " +
		"called: sk_max_ack_backlog = min(backlog, somaxconn) (__sys_listen()). Raising " +
		"somaxconn later changes nothing until the application calls listen() again.",
	"overflow": "A server that accepts too slowly: the accept queue fills to backlog+1 " +
		"(sk_acceptq_is_full() tests >), then each new SYN is dropped silently " +
		"(tcp_conn_request()), counted in ListenOverflows, ListenDrops and the listener's " +
		"sk_drops. Clients stay in SYN-SENT and retransmit their SYN %s, and " +
		"every retransmission is dropped and counted again.",
	"synflood": "Half-open handshakes (the clients' final ACKs never arrive) fill the SYN queue " +
		"to its limit (inet_csk_reqsk_queue_is_full()): backlog+1, or backlog on kernels without " +
		"upstream 3479c7549fb1 (v6.13, in stable kernels since 2025). With tcp_syncookies=0 further SYNs are " +
		"dropped (TCPReqQFullDrop, ListenDrops); with 1 they are answered with a SYN cookie " +
		"instead of queued (TCPReqQFullDoCookies, SyncookiesSent); with 2 every SYN gets a " +
		"cookie and nothing queues. Without cookies, tcp_max_syn_backlog also caps the queue at " +
		"3/4 of its value, counted only in ListenDrops.",
	"abort": "When the final ACK arrives and the accept queue is full, the kernel normally drops " +
		"it and lets the client retry (ListenOverflows). With tcp_abort_on_overflow=1 it " +
		"answers with a RST instead (tcp_check_req()): the client's connection, which it " +
		"believed established, is reset.",
	"reuseport": "Two listeners with SO_REUSEPORT on one address and port, neither accepting: " +
		"a group whose members each keep their own accept and SYN queues and drops. The kernel " +
		"hashes each client to a member (reuseport_select_sock()), blind to load, so each " +
		"member fills to backlog+1 on its own and drops the SYNs hashed to it. When a member " +
		"closes, the connections waiting in its accept queue are reset (inet_csk_listen_stop()) " +
		"unless net.ipv4.tcp_migrate_req=1 moves them to another member.",
	"unix-overflow": "A UNIX stream listener (php-fpm, gunicorn, uWSGI, puma behind nginx) that " +
		"does not accept. Its queue takes backlog+1 connections (unix_recvq_full() tests >); " +
		"then unix_stream_connect() refuses a non-blocking connect with EAGAIN at once (nginx: " +
		"502, \"Resource temporarily unavailable\") and puts a blocking one to sleep until " +
		"accept() makes room or its SO_SNDTIMEO runs out. The kernel counts none of it. " +
		"listen(2) caps a UNIX backlog at net.core.somaxconn as it caps TCP's.",
}
