// Package snapshot is backlog's model of the listen path at one instant:
// namespaces with their counters and sysctls, and listeners with their
// queues. It does no I/O; sources fill it, views read it.
package snapshot

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// Snapshot is everything one collection saw. Its JSON form is the contract
// of `backlog ls --json` (docs/json.md): keys are added, never renamed.
type Snapshot struct {
	TakenAt    time.Time   `json:"taken_at"`
	Namespaces []Namespace `json:"namespaces"`
	Listeners  []Listener  `json:"listeners"`
	// Node is the name of the machine the snapshot was taken on, as
	// Kubernetes knows it (NODE_NAME, else the host name); empty when unknown.
	Node string `json:"node,omitempty"`
	// Source says how listeners and owners were read: "bpf_iter" (BPF
	// iterators) or "sock_diag" (sock_diag dumps and a /proc/*/fd walk);
	// the numbers are the same either way. Empty when unknown (replays of
	// older recordings).
	Source string `json:"source,omitempty"`
	// Warnings are things a person should know about the collection, such
	// as owners that could not be read for lack of privilege.
	Warnings []string `json:"warnings,omitempty"`
	// Hidden are processes whose /proc entries were refused, where that
	// hides something this snapshot was asked to show.
	Hidden []Hidden `json:"hidden,omitempty"`
}

// Hidden is a process whose /proc entries the kernel refused to this
// collection, and what that hides from the snapshot.
type Hidden struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm,omitempty"`
	// Errno names the refusal: EACCES, EPERM.
	Errno string `json:"errno"`
	// Netns: its /proc/PID/ns/net was refused, so its network namespace
	// was not read; MissingListeners of that namespace's listeners are
	// absent from the snapshot.
	Netns            bool `json:"netns,omitempty"`
	MissingListeners int  `json:"missing_listeners,omitempty"`
	// Owners: its /proc/PID/fd was refused, so listeners it holds show no
	// owner.
	Owners bool `json:"owners,omitempty"`
}

// Namespace is one network namespace with its listen-path settings.
type Namespace struct {
	Inode uint64 `json:"inode"`
	Name  string `json:"name"`
	// Path is the nsfs file it was entered through (/run/netns/NAME,
	// /proc/PID/ns/net); empty for the caller's own namespace.
	Path     string   `json:"path,omitempty"`
	Sysctls  Sysctls  `json:"sysctls"`
	Counters Counters `json:"counters"`
	// Error says why the namespace could not be read; its listeners are
	// then missing from the snapshot.
	Error string `json:"error,omitempty"`
	// Workload is the pod or container the namespace belongs to, from a
	// process inside it; for a pod, Container is empty (its containers
	// share the namespace). Nil for the host's and unknown namespaces.
	Workload *Workload `json:"workload,omitempty"`
}

// Sysctls are the per-namespace settings that cap the listen path. A nil
// field is one the kernel does not have (or that could not be read).
type Sysctls struct {
	Somaxconn          *int64 `json:"somaxconn,omitempty"`
	TCPMaxSynBacklog   *int64 `json:"tcp_max_syn_backlog,omitempty"`
	TCPSyncookies      *int64 `json:"tcp_syncookies,omitempty"`
	TCPAbortOnOverflow *int64 `json:"tcp_abort_on_overflow,omitempty"`
	TCPSynackRetries   *int64 `json:"tcp_synack_retries,omitempty"`
}

// Counters are the TcpExt listen counters of /proc/net/netstat, spelled as
// the kernel spells them. A nil field is one this kernel does not report.
type Counters struct {
	ListenOverflows           *uint64 `json:"ListenOverflows,omitempty"`
	ListenDrops               *uint64 `json:"ListenDrops,omitempty"`
	TCPReqQFullDrop           *uint64 `json:"TCPReqQFullDrop,omitempty"`
	TCPReqQFullDoCookies      *uint64 `json:"TCPReqQFullDoCookies,omitempty"`
	SyncookiesSent            *uint64 `json:"SyncookiesSent,omitempty"`
	SyncookiesRecv            *uint64 `json:"SyncookiesRecv,omitempty"`
	SyncookiesFailed          *uint64 `json:"SyncookiesFailed,omitempty"`
	TCPFastOpenListenOverflow *uint64 `json:"TCPFastOpenListenOverflow,omitempty"`
	// TCPDeferAcceptDrop counts bare final ACKs a TCP_DEFER_ACCEPT listener
	// ignored while waiting for data (tcp_check_req()): no client is lost,
	// the handshake stays half-open in the SYN queue.
	TCPDeferAcceptDrop *uint64 `json:"TCPDeferAcceptDrop,omitempty"`
}

// Named returns the counters with their kernel names, in a fixed order,
// skipping those the kernel does not report.
func (c Counters) Named() []NamedValue {
	all := []struct {
		name string
		v    *uint64
	}{
		{"ListenOverflows", c.ListenOverflows},
		{"ListenDrops", c.ListenDrops},
		{"TCPReqQFullDrop", c.TCPReqQFullDrop},
		{"TCPReqQFullDoCookies", c.TCPReqQFullDoCookies},
		{"SyncookiesSent", c.SyncookiesSent},
		{"SyncookiesRecv", c.SyncookiesRecv},
		{"SyncookiesFailed", c.SyncookiesFailed},
		{"TCPFastOpenListenOverflow", c.TCPFastOpenListenOverflow},
		{"TCPDeferAcceptDrop", c.TCPDeferAcceptDrop},
	}
	var out []NamedValue
	for _, a := range all {
		if a.v != nil {
			out = append(out, NamedValue{a.name, int64(*a.v)})
		}
	}
	return out
}

// Named returns the sysctls with their short names, in a fixed order,
// skipping those the kernel does not have.
func (s Sysctls) Named() []NamedValue {
	all := []struct {
		name string
		v    *int64
	}{
		{"somaxconn", s.Somaxconn},
		{"tcp_max_syn_backlog", s.TCPMaxSynBacklog},
		{"tcp_syncookies", s.TCPSyncookies},
		{"tcp_abort_on_overflow", s.TCPAbortOnOverflow},
		{"tcp_synack_retries", s.TCPSynackRetries},
	}
	var out []NamedValue
	for _, a := range all {
		if a.v != nil {
			out = append(out, NamedValue{a.name, *a.v})
		}
	}
	return out
}

// NamedValue is one counter or sysctl.
type NamedValue struct {
	Name  string
	Value int64
}

// Listener is one listening socket: TCP (family inet or inet6) or UNIX
// stream or seqpacket (family unix).
type Listener struct {
	Netns  uint64 `json:"netns"`
	Family string `json:"family"` // "inet", "inet6" or "unix"
	// Address and Port are a TCP listener's local address; zero, and
	// absent in JSON, for a UNIX listener.
	Address netip.Addr `json:"address,omitzero"`
	Port    uint16     `json:"port,omitzero"`
	// Path is a UNIX listener's name: a file path, "@name" for an abstract
	// one (each NUL written as "@", as ss does), empty when it has none.
	Path string `json:"path,omitempty"`
	// Type is a UNIX listener's socket type: "stream" or "seqpacket".
	Type string `json:"type,omitempty"`
	// VFS is the device and inode of a UNIX listener's socket file
	// (UNIX_DIAG_VFS); it tells apart sockets of the same path in
	// different mount namespaces. Nil for abstract names.
	VFS   *VFS   `json:"vfs,omitempty"`
	Inode uint32 `json:"inode"`
	// UID owns the socket (UNIX_DIAG_UID, Linux 5.3 on); nil when the
	// kernel did not say. Set for UNIX listeners only.
	UID *uint32 `json:"uid,omitempty"`
	// AcceptQueue is the number of finished handshakes waiting for
	// accept(2); it can reach Backlog+1 (sk_acceptq_is_full() uses ">").
	AcceptQueue uint32 `json:"accept_queue"`
	// Backlog is the effective backlog: min(listen(2) backlog, somaxconn).
	Backlog uint32 `json:"backlog"`
	// SynQueue is the number of half-open handshakes (request sockets,
	// SYN-RECV) for it, TCP Fast Open ones excluded;
	// always 0 for a UNIX listener, whose connect(2) has no handshake.
	// Nil (absent in JSON) for a SO_REUSEPORT member read with sock_diag:
	// a request socket there names no listener, so only the group's
	// total is known (GroupSynQueue).
	SynQueue *uint32 `json:"syn_queue,omitempty"`
	// GroupSynQueue is set, on each member of a SO_REUSEPORT group read
	// with sock_diag, to the half-open handshakes of the whole group.
	GroupSynQueue *uint32 `json:"group_syn_queue,omitempty"`
	// FastOpenQueue is the number of TCP Fast Open children whose
	// handshake is not finished (fastopenq.qlen). They are already in
	// AcceptQueue and not in SynQueue; absent in JSON when 0.
	FastOpenQueue uint32 `json:"fast_open_queue,omitempty"`
	// Drops is the listener's sk_drops: dropped packets, retransmitted
	// SYNs included, not refused clients. Nil when the kernel did not say.
	Drops  *uint64 `json:"drops,omitempty"`
	V6Only *bool   `json:"v6only,omitempty"`
	// Processes own the socket. Nil (JSON null) when owners could not be
	// read; empty when none was found.
	Processes []Process `json:"processes"`
	// Workload is the pod or container of its owning processes (a listener
	// of a hostNetwork pod lives in the host namespace but belongs to the
	// pod); with no owner known, the workload of its namespace when that
	// is a pod's. Nil when it belongs to none.
	Workload *Workload `json:"workload,omitempty"`
}

// Workload is who runs a socket's owner: a Kubernetes pod and container,
// or a plain container. Names follow kube-state-metrics and cAdvisor
// (namespace, pod, container), so they join with kube_pod_info. Empty
// fields are unknown.
type Workload struct {
	// Namespace, Pod and PodUID name the Kubernetes pod.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	PodUID    string `json:"pod_uid,omitempty"`
	// Container is the Kubernetes container name, or the runtime's name of
	// a plain container (docker --name, podman --name, a containerd id).
	Container   string `json:"container,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	// Runtime is docker, podman, containerd or cri-o.
	Runtime string `json:"runtime,omitempty"`
	// Node is the Kubernetes node (Snapshot.Node) the workload runs on.
	Node string `json:"node,omitempty"`
}

// String names the workload for people: NAMESPACE/POD/CONTAINER for a pod,
// RUNTIME:NAME for a plain container, with what is unknown left out.
func (w *Workload) String() string {
	if w == nil {
		return ""
	}
	if w.Pod != "" || w.PodUID != "" {
		s := w.Pod
		if s == "" {
			s = "pod:" + w.PodUID
		}
		if w.Namespace != "" {
			s = w.Namespace + "/" + s
		}
		if w.Container != "" {
			s += "/" + w.Container
		}
		return s
	}
	name := w.Container
	if name == "" {
		name = shortID(w.ContainerID)
	}
	if w.Runtime == "" {
		return name
	}
	return w.Runtime + ":" + name
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// VFS names the file a UNIX socket is bound to: the kernel's device
// number of its filesystem (s_dev: major<<20 | minor) and its inode.
type VFS struct {
	Dev   uint32 `json:"dev"`
	Inode uint32 `json:"inode"`
}

// Process is an owner of a socket.
type Process struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// State is the letter of /proc/PID/stat: R running, S sleeping, D
	// waiting on I/O, T stopped (SIGSTOP: it accepts nothing), t traced, Z
	// zombie. Empty when it could not be read.
	State string `json:"state,omitempty"`
	// PPID is the parent's pid; 0 when unknown.
	PPID int `json:"ppid,omitempty"`
	// Role is RoleMaster when another owner of the same socket is its
	// child, RoleWorker when its parent owns the socket too; empty for a
	// process that holds it alone.
	Role string `json:"role,omitempty"`
	// Serving says this owner waits for connections on the socket: its
	// epoll set watches it (the "tfd" lines of /proc/PID/fdinfo). Each
	// SO_REUSEPORT member of nginx is watched by one worker only, though
	// every worker may hold all of them. Set only when some owner of the
	// socket polls it with epoll; a server that blocks in accept() or uses
	// poll(2) marks none.
	Serving bool `json:"serving,omitempty"`
}

// Roles of a socket's owners (Process.Role).
const (
	RoleMaster = "master"
	RoleWorker = "worker"
)

// SynQueueLen is the SYN queue, 0 when it is unknown (SynQueue nil): for
// sorting and sums where an unknown member counts as nothing.
func (l *Listener) SynQueueLen() uint32 {
	if l.SynQueue == nil {
		return 0
	}
	return *l.SynQueue
}

// Stopped reports whether the process is stopped (SIGSTOP, SIGTSTP) or
// held by a tracer: it accepts nothing until continued.
func (p Process) Stopped() bool { return p.State == "T" || p.State == "t" }

// Family names used in Listener.Family.
const (
	FamilyInet  = "inet"
	FamilyInet6 = "inet6"
	FamilyUnix  = "unix"
)

// UNIX socket types used in Listener.Type.
const (
	TypeStream    = "stream"
	TypeSeqpacket = "seqpacket"
)

// IsUnix reports whether l is a UNIX-domain listener.
func (l *Listener) IsUnix() bool { return l.Family == FamilyUnix }

// Local is the listener's local name as ss prints it: address:port for
// TCP ([v6]:port for IPv6), the path or @abstract name for UNIX ("*"
// when it has none).
func (l *Listener) Local() string {
	if l.IsUnix() {
		if l.Path == "" {
			return "*"
		}
		return l.Path
	}
	return netip.AddrPortFrom(l.Address, l.Port).String()
}

// Fill is the accept queue as a fraction of the backlog; it exceeds 1 when
// the queue holds backlog+1. ok is false for a zero backlog.
func (l *Listener) Fill() (fill float64, ok bool) {
	if l.Backlog == 0 {
		return 0, false
	}
	return float64(l.AcceptQueue) / float64(l.Backlog), true
}

// Full reports whether the accept queue is at or past its backlog: the
// next SYN or final ACK is dropped (sk_acceptq_is_full()).
func (l *Listener) Full() bool { return l.AcceptQueue > l.Backlog }

// SortFullest orders listeners with the fullest accept queues first, then by
// SYN queue and drops, then by namespace, port and address for stability.
func SortFullest(ls []Listener) {
	// Sorting indices, with the original position as the last key, gives
	// what a stable sort of the listeners gives without moving the large
	// structs at every step.
	type key struct {
		fill float64
		i    int
	}
	keys := make([]key, len(ls))
	for i := range ls {
		f, _ := ls[i].Fill()
		keys[i] = key{f, i}
	}
	slices.SortFunc(keys, func(x, y key) int {
		a, b := &ls[x.i], &ls[y.i]
		// One key at a time: cmp.Or would compute every comparison.
		if c := cmp.Compare(y.fill, x.fill); c != 0 {
			return c
		}
		if c := cmp.Compare(b.AcceptQueue, a.AcceptQueue); c != 0 {
			return c
		}
		if c := cmp.Compare(b.SynQueueLen(), a.SynQueueLen()); c != 0 {
			return c
		}
		if c := cmp.Compare(deref(b.Drops), deref(a.Drops)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Netns, b.Netns); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Inode, b.Inode); c != 0 {
			return c
		}
		return cmp.Compare(x.i, y.i)
	})
	// Move the listeners along the permutation's cycles, in place: a
	// sorted copy was a new 2 MB at every refresh of 10,000 listeners.
	for start := range keys {
		if keys[start].i < 0 {
			continue
		}
		tmp := ls[start]
		j := start
		for {
			from := keys[j].i
			keys[j].i = -1 // placed
			if from == start {
				ls[j] = tmp
				break
			}
			ls[j] = ls[from]
			j = from
		}
	}
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// Namespace returns the namespace with the given inode, or nil.
func (s *Snapshot) Namespace(inode uint64) *Namespace {
	for i := range s.Namespaces {
		if s.Namespaces[i].Inode == inode {
			return &s.Namespaces[i]
		}
	}
	return nil
}

// Delta returns how much each counter moved since prev, by kernel name, for
// counters present in both.
func (c Counters) Delta(prev Counters) map[string]int64 {
	before := make(map[string]int64)
	for _, nv := range prev.Named() {
		before[nv.Name] = nv.Value
	}
	d := make(map[string]int64)
	for _, nv := range c.Named() {
		if b, ok := before[nv.Name]; ok {
			d[nv.Name] = nv.Value - b
		}
	}
	return d
}

// Listener returns the listener with the given key, or nil.
func (s *Snapshot) Listener(k ListenerKey) *Listener {
	for i := range s.Listeners {
		if s.Listeners[i].Key() == k {
			return &s.Listeners[i]
		}
	}
	return nil
}
