//go:build amd64

package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/caps"
	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/procfd"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

const btfPath = "/sys/kernel/btf/vmlinux"

// Check says in one error what this host lacks for tracing: kernel BTF,
// and CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN, as root has). Call it
// before New: cilium/ebpf's own errors for these ("failed to set memlock
// rlimit", "operation not permitted") do not say what to do.
func Check() error {
	var missing []string
	if _, err := os.Stat(btfPath); err != nil {
		missing = append(missing, "kernel BTF ("+btfPath+" is missing: use a kernel built with CONFIG_DEBUG_INFO_BTF=y)")
	}
	eff, err := caps.Effective()
	if err != nil {
		return fmt.Errorf("trace: reading this process's capabilities: %w", err)
	}
	if !eff.Has(caps.SysAdmin) && !(eff.Has(caps.BPF) && eff.Has(caps.Perfmon)) {
		var lack []string
		if !eff.Has(caps.BPF) {
			lack = append(lack, "CAP_BPF")
		}
		if !eff.Has(caps.Perfmon) {
			lack = append(lack, "CAP_PERFMON")
		}
		missing = append(missing, fmt.Sprintf("root, or CAP_BPF and CAP_PERFMON (this process lacks %s)", joinAnd(lack)))
	}
	if len(missing) > 0 {
		return &MissingError{Missing: missing}
	}
	return nil
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return fmt.Sprintf("%s and %s", s[0], s[1])
}

// Tracer holds the loaded and attached programs. Create it with New (which
// starts tracing at once), read events with Run, and Close it.
type Tracer struct {
	opts     Options
	programs Programs
	ackHook  string
	// acceptHook takes accept waits: "fexit" (inet_csk_accept, every
	// accept path) or "sys_exit" (accept(2)/accept4(2) only).
	acceptHook string
	// acceptLimit says what the sys_exit hook cannot see; "" with fexit.
	acceptLimit string
	// unixHook takes UNIX connects refused by connect(2): "fexit"
	// (__x64_sys_connect or __sys_connect) or "sys_exit"; "" with NoUnix.
	unixHook string
	// memberHook tells a SYN's SO_REUSEPORT member: "fentry"
	// (tcp_conn_request, exact) or "drops" (the only member whose sk_drops
	// rose, or the only one meeting the drop condition, else ambiguous).
	memberHook string
	// trampolineErr is why this kernel refused an fentry/fexit program.
	trampolineErr error
	missing       []MissingStage
	warnings      []string

	maps    tracerMaps
	links   []link.Link
	reader  *ringbuf.Reader
	ureader *ringbuf.Reader // UNIX connects refused
	offset  atomic.Int64    // wall clock - CLOCK_MONOTONIC, ns
	names   map[uint64]string
	owners  map[uint64][]snapshot.Process // socket inode → owners, for listeners older than the trace
	ownerMu sync.Mutex
	// checked is when owners[inode] was last found alive: owners are
	// resolved when reported, not trusted from listen() time (a server
	// that daemonizes listens in a pid that exits right after).
	checked map[uint64]time.Time
	tally   tally

	closeOnce sync.Once
	mapsMu    sync.RWMutex // Close takes it to close the maps Stats reads
}

type tracerMaps struct {
	Events      *ebpf.Map `ebpf:"events"`
	Listeners   *ebpf.Map `ebpf:"listeners"`
	Waits       *ebpf.Map `ebpf:"waits"`
	Counters    *ebpf.Map `ebpf:"counters"`
	WantPorts   *ebpf.Map `ebpf:"want_ports"`
	WantNetns   *ebpf.Map `ebpf:"want_netns"`
	LastSynack  *ebpf.Map `ebpf:"last_synack"`
	Connecting  *ebpf.Map `ebpf:"connecting"`
	UnixEvents  *ebpf.Map `ebpf:"unix_events"`
	Socks       *ebpf.Map `ebpf:"socks"`
	ConnRequest *ebpf.Map `ebpf:"conn_request"`
	ListenArgs  *ebpf.Map `ebpf:"listen_args"`
	SeenDrops   *ebpf.Map `ebpf:"seen_drops"`
	AckEntry    *ebpf.Map `ebpf:"ack_entry"`
}

func (m *tracerMaps) all() []*ebpf.Map {
	return []*ebpf.Map{m.Events, m.Listeners, m.Waits, m.Counters, m.WantPorts, m.WantNetns, m.LastSynack, m.Connecting, m.UnixEvents,
		m.Socks, m.ConnRequest, m.ListenArgs, m.SeenDrops, m.AckEntry}
}

// hook is one kernel hook and its programs by type.
type hook struct {
	name  string // tracepoint or kernel function
	btf   string // tp_btf program
	raw   string // raw_tp program
	entry bool   // an fentry program (btf names it)
	exit  bool   // an fexit program (btf names it)
}

// The hooks every trace needs, attached in this order: listeners first,
// so that no SYN meets an unknown listener.
var coreHooks = []hook{
	{name: "inet_sock_set_state", btf: "tp_btf_inet_sock_set_state", raw: "raw_tp_inet_sock_set_state"},
	{name: "net_dev_queue", btf: "tp_btf_net_dev_queue", raw: "raw_tp_net_dev_queue"},
	{name: "consume_skb", btf: "tp_btf_consume_skb", raw: "raw_tp_consume_skb"},
}

// sys_exit finishes accept-queue waits and UNIX connects; sys_enter starts
// the latter.
var (
	sysExitHook  = hook{name: "sys_exit", btf: "tp_btf_sys_exit", raw: "raw_tp_sys_exit"}
	sysEnterHook = hook{name: "sys_enter", btf: "tp_btf_sys_enter", raw: "raw_tp_sys_enter"}
)

// NoFentryEnv, set to anything, makes trace skip fentry and fexit as a
// kernel that refuses trampolines would: a test and diagnostic switch for
// the other paths (the kernel matrix's kernels all allow trampolines).
const NoFentryEnv = "BACKLOG_TRACE_NO_FENTRY"

// The ack stage: fentry and fexit on the functions that count
// ListenOverflows at the final ACK (exact on every kernel that allows BPF
// trampolines), else kfree_skb with the drop reason Linux 6.15 added.
var (
	ackEntryHooks = []hook{
		{name: "tcp_v4_syn_recv_sock", btf: "fentry_tcp_v4_syn_recv_sock", entry: true},
		{name: "tcp_v6_syn_recv_sock", btf: "fentry_tcp_v6_syn_recv_sock", entry: true},
	}
	// By the functions' number of parameters: 6 (sk, skb, req, dst,
	// req_unhash, own_req), or 7 with opt_child_init (6.18 has it).
	ackExitHooks = map[int][]hook{
		6: {
			{name: "tcp_v4_syn_recv_sock", btf: "fexit_tcp_v4_syn_recv_sock", exit: true},
			{name: "tcp_v6_syn_recv_sock", btf: "fexit_tcp_v6_syn_recv_sock", exit: true},
		},
		7: {
			{name: "tcp_v4_syn_recv_sock", btf: "fexit_tcp_v4_syn_recv_sock_init", exit: true},
			{name: "tcp_v6_syn_recv_sock", btf: "fexit_tcp_v6_syn_recv_sock_init", exit: true},
		},
	}
	kfreeHook     = hook{name: "kfree_skb", btf: "tp_btf_kfree_skb", raw: "raw_tp_kfree_skb"}
	kfreeRxSkHook = hook{name: "kfree_skb", btf: "tp_btf_kfree_skb_rx_sk", raw: "raw_tp_kfree_skb_rx_sk"}
	// The SO_REUSEPORT member a SYN reached (optional: without it the
	// member is told by the drop condition, or counted ambiguous).
	connRequestHook = hook{name: "tcp_conn_request", btf: "fentry_tcp_conn_request", entry: true}
	// Accept waits on every accept path (Linux 6.10 changed the arguments).
	acceptHook    = hook{name: "inet_csk_accept", btf: "fexit_inet_csk_accept", exit: true}
	acceptArgHook = hook{name: "inet_csk_accept", btf: "fexit_inet_csk_accept_arg", exit: true}
	// UNIX connects refused, and listen(2)'s backlog, without a hook on
	// every system call.
	// The first of each that loads and attaches.
	unixConnectHooks = []hook{
		{name: "__x64_sys_connect", btf: "fexit_x64_sys_connect", exit: true},
		{name: "__sys_connect", btf: "fexit_sys_connect", exit: true},
	}
	listenHooks = []hook{
		{name: "__x64_sys_listen", btf: "fentry_x64_sys_listen", entry: true},
		{name: "__sys_listen", btf: "fentry_sys_listen", entry: true},
	}
)

type mapObjects struct {
	tracerMaps
}

// New checks the host, loads and attaches the programs, and learns the
// listeners that already exist. Events are buffered from then on; call
// Run to read them.
func New(opts Options) (*Tracer, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("trace: raising the locked-memory limit for eBPF maps: %w (run as root, or raise ulimit -l)", err)
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	t := &Tracer{opts: opts, names: map[uint64]string{}, owners: map[uint64][]snapshot.Process{}}
	if os.Getenv(NoFentryEnv) != "" {
		t.trampolineErr = fmt.Errorf("not tried: %s is set", NoFentryEnv)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := t.resolveNamespaces(); err != nil {
		return nil, err
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("trace: reading the embedded eBPF object: %w", err)
	}
	if err := t.configure(spec); err != nil {
		return nil, err
	}
	if err := t.loadAndAttach(spec); err != nil {
		return nil, err
	}
	if err := t.fillFilters(); err != nil {
		return nil, err
	}
	if t.reader, err = ringbuf.NewReader(t.maps.Events); err != nil {
		return nil, fmt.Errorf("trace: opening the event ring buffer: %w", err)
	}
	if t.ureader, err = ringbuf.NewReader(t.maps.UnixEvents); err != nil {
		return nil, fmt.Errorf("trace: opening the UNIX event ring buffer: %w", err)
	}
	t.offset.Store(int64(wallMinusMonotonic()))
	t.seed(spec)
	ok = true
	return t, nil
}

// Programs says which program type is attached.
func (t *Tracer) Programs() Programs { return t.programs }

// AckHook says what catches the ack stage: "fexit", "kfree_skb", or ""
// when nothing can on this kernel (Missing says why).
func (t *Tracer) AckHook() string { return t.ackHook }

// AcceptHook says what takes accept waits: "fexit" (every accept path,
// io_uring included), "sys_exit" (accept(2) and accept4(2) only), or ""
// when accept waits are off.
func (t *Tracer) AcceptHook() string { return t.acceptHook }

// AcceptLimit is, in one line, what accept waits miss on this kernel
// ("" when every accept path is seen).
func (t *Tracer) AcceptLimit() string { return t.acceptLimit }

// UnixHook says what catches UNIX connects refused: "fexit", "sys_exit",
// or "" when they are left out.
func (t *Tracer) UnixHook() string { return t.unixHook }

// MemberHook says how a SYN's SO_REUSEPORT member is told: "fentry"
// (exactly, from tcp_conn_request()) or "drops" (the only member of the
// group whose sk_drops rose since this CPU last looked, or else the only
// one meeting the drop condition; when neither tells, the event names the
// address only and counts as ambiguous).
func (t *Tracer) MemberHook() string { return t.memberHook }

// Missing lists the stages this kernel cannot trace, with the reason.
func (t *Tracer) Missing() []MissingStage { return t.missing }

// Warnings are what a person should know about this trace: hooks that
// could not attach, namespaces whose existing listeners are unknown.
func (t *Tracer) Warnings() []string { return t.warnings }

func (t *Tracer) resolveNamespaces() error {
	if len(t.opts.Namespaces) == 0 {
		t.opts.Namespaces = []Namespace{{}}
	}
	for i := range t.opts.Namespaces {
		ns := &t.opts.Namespaces[i]
		if ns.Inode != 0 {
			t.names[ns.Inode] = ns.Name
			continue
		}
		path := ns.Path
		if path == "" {
			path = "/proc/self/ns/net"
		}
		id, err := netns.Stat(path)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		ns.Inode = id.Inode
		t.names[ns.Inode] = ns.Name
	}
	return nil
}

func (t *Tracer) configure(spec *ebpf.CollectionSpec) error {
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("trace: the eBPF object has no variable %s (rebuild it with go generate)", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("trace: setting %s: %w", name, err)
		}
		return nil
	}
	return errors.Join(
		set("filter_ports", len(t.opts.Ports) > 0),
		set("filter_netns", t.opts.OnlyNamespaces),
		set("nr_accept", uint64(unix.SYS_ACCEPT)),
		set("nr_accept4", uint64(unix.SYS_ACCEPT4)),
		set("nr_connect", uint64(unix.SYS_CONNECT)),
		set("nr_listen", uint64(unix.SYS_LISTEN)),
		set("unix_at_syscalls", !t.opts.NoUnix),
		set("listen_at_enter", true),
		set("synq_full_at_backlog", t.synqFullAtBacklog()),
	)
}

// synqFullAtBacklog finds out which SYN-queue limit this kernel has, for
// telling syn-queue drops from others.
func (t *Tracer) synqFullAtBacklog() bool {
	full, err := lab.SynQueueFullAtBacklog()
	if err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("assuming the SYN queue holds backlog+1 (Linux 6.13+ and stable kernels since 2025); "+
			"on older kernels syn-queue drops count as unmatched: %v", err))
	}
	return full
}

func (t *Tracer) loadAndAttach(spec *ebpf.CollectionSpec) error {
	var errBtf error
	if t.opts.Programs != ProgramsRawTp {
		errBtf = t.attachCore(spec, true)
		if errBtf == nil {
			t.programs = ProgramsTpBtf
		} else if t.opts.Programs == ProgramsTpBtf {
			return errBtf
		}
	}
	if t.programs == "" {
		if err := t.attachCore(spec, false); err != nil {
			if errBtf != nil {
				return fmt.Errorf("%w (raw tracepoints failed too: %v)", errBtf, err)
			}
			return err
		}
		t.programs = ProgramsRawTp
		if errBtf != nil {
			t.warnings = append(t.warnings, fmt.Sprintf("using raw tracepoints: %v", errBtf))
		}
	}
	btf := t.programs == ProgramsTpBtf
	// listen(2)'s backlog: fentry where trampolines load, else the entry
	// of every system call, which UNIX connects may need anyway.
	listenAtEnter := t.attachListen(spec) != nil
	unixAtSyscalls := !t.opts.NoUnix && t.unixHook == "sys_exit"
	if unixAtSyscalls || listenAtEnter && !t.opts.NoUnix {
		err := errors.Join(spec.Variables["listen_at_enter"].Set(listenAtEnter),
			spec.Variables["unix_at_syscalls"].Set(unixAtSyscalls))
		if err == nil {
			err = t.attachHook(spec, sysEnterHook, btf)
		}
		if err != nil && unixAtSyscalls {
			// The rest of the trace stands without it.
			t.warnings = append(t.warnings, fmt.Sprintf("UNIX connects refused with EAGAIN are not visible: %v", err))
		}
	}
	t.attachAck(spec, btf)
	t.attachMember(spec)
	return nil
}

// attachCore creates the maps and attaches the hooks every trace needs.
func (t *Tracer) attachCore(spec *ebpf.CollectionSpec, btf bool) error {
	var objs mapObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return loadError(err)
	}
	t.maps = objs.tracerMaps
	hooks := coreHooks
	for _, h := range hooks {
		if err := t.attachHook(spec, h, btf); err != nil {
			t.closeLinks()
			t.closeMaps()
			return err
		}
	}
	t.acceptHook = ""
	if !t.opts.NoAcceptWait {
		t.attachAccept(spec)
	}
	t.unixHook = ""
	if !t.opts.NoUnix {
		t.attachUnix(spec)
	}
	// The hook on every system call's exit: only when something needs it.
	if t.acceptHook == "sys_exit" || t.unixHook == "sys_exit" {
		err := errors.Join(spec.Variables["accept_at_exit"].Set(t.acceptHook == "sys_exit"),
			spec.Variables["unix_at_syscalls"].Set(t.unixHook == "sys_exit"))
		if err != nil {
			return fmt.Errorf("trace: setting the system call hooks' variables: %w (rebuild the eBPF object with go generate)", err)
		}
		if err := t.attachHook(spec, sysExitHook, btf); err != nil {
			t.closeLinks()
			t.closeMaps()
			return err
		}
	}
	return nil
}

// attachAccept takes accept waits from fexit of inet_csk_accept(), which
// every accept path reaches (accept(2), accept4(2), io_uring), and falls
// back to the exit of accept(2)/accept4(2) where trampolines are refused:
// io_uring's accepts are then not seen, and a warning says so.
func (t *Tracer) attachAccept(spec *ebpf.CollectionSpec) {
	h := acceptHook
	if funcParams("inet_csk_accept") == 2 { // Linux 6.10+: (sk, struct proto_accept_arg *)
		h = acceptArgHook
	}
	err := t.attachHook(spec, h, true)
	if err == nil {
		t.acceptHook = "fexit"
		return
	}
	t.acceptHook = "sys_exit"
	why := err.Error()
	if errors.Is(err, unix.EPERM) {
		why = "operation not permitted"
	}
	t.acceptLimit = "accept waits come from accept(2) and accept4(2) only, io_uring accepts are not seen " +
		"(this kernel refused fexit on inet_csk_accept: " + why + ")"
}

// attachUnix takes UNIX connects refused with EAGAIN from fexit of
// connect(2)'s entry point or body, and falls back to the hooks on every
// system call's entry and exit where trampolines are refused.
func (t *Tracer) attachUnix(spec *ebpf.CollectionSpec) {
	if t.attachFirst(spec, unixConnectHooks) == nil {
		t.unixHook = "fexit"
		return
	}
	t.unixHook = "sys_exit"
}

// attachListen reads listen(2)'s backlog argument with fentry on its
// entry point or body.
func (t *Tracer) attachListen(spec *ebpf.CollectionSpec) error {
	return t.attachFirst(spec, listenHooks)
}

// attachFirst attaches the first of hooks that loads and attaches on this
// kernel.
func (t *Tracer) attachFirst(spec *ebpf.CollectionSpec, hooks []hook) error {
	err := errors.New("none of the functions is in this kernel's BTF")
	for _, h := range hooks {
		if funcParams(h.name) < 0 {
			continue
		}
		if err = t.attachHook(spec, h, true); err == nil {
			return nil
		}
	}
	return err
}

// funcParams is the number of parameters of kernel function name in the
// kernel's BTF, -1 if unknown.
func funcParams(name string) int {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return -1
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err != nil {
		return -1
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return -1
	}
	return len(proto.Params)
}

// tracepointArgs is the number of arguments of tracepoint name in the
// kernel's BTF (its btf_trace_ typedef, less the leading context), -1 if
// unknown.
func tracepointArgs(name string) int {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return -1
	}
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return -1
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return -1
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return -1
	}
	return len(proto.Params) - 1
}

// loadProgram loads one program of spec, sharing the tracer's maps.
func (t *Tracer) loadProgram(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, error) {
	cs := spec.Copy()
	ps, ok := cs.Programs[name]
	if !ok {
		return nil, fmt.Errorf("trace: the eBPF object has no program %s (rebuild it with go generate)", name)
	}
	cs.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	repl := map[string]*ebpf.Map{
		"events": t.maps.Events, "listeners": t.maps.Listeners, "waits": t.maps.Waits, "counters": t.maps.Counters,
		"want_ports": t.maps.WantPorts, "want_netns": t.maps.WantNetns, "last_synack": t.maps.LastSynack,
		"connecting": t.maps.Connecting, "unix_events": t.maps.UnixEvents, "socks": t.maps.Socks, "conn_request": t.maps.ConnRequest,
		"listen_args": t.maps.ListenArgs, "seen_drops": t.maps.SeenDrops, "ack_entry": t.maps.AckEntry,
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, loadError(err)
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

// attachHook loads and attaches one hook's program of the chosen type.
func (t *Tracer) attachHook(spec *ebpf.CollectionSpec, h hook, btf bool) error {
	name := h.raw
	if btf || h.entry || h.exit {
		name = h.btf
	}
	trampoline := h.entry || h.exit
	if trampoline && t.trampolineErr != nil {
		// Refused once, refused for every function: loading another
		// only costs start-up time.
		return t.trampolineErr
	}
	prog, err := t.loadProgram(spec, name)
	if trampoline && errors.Is(err, unix.EPERM) {
		t.trampolineErr = err
	}
	if err != nil {
		return err
	}
	// The link holds the program.
	defer prog.Close()
	var l link.Link
	switch {
	case h.entry:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	case h.exit:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFExit})
	case btf:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	default:
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.name, Program: prog})
	}
	if err != nil {
		return fmt.Errorf("trace: attaching to %s: %w", h.name, err)
	}
	t.links = append(t.links, l)
	return nil
}

// attachAck adds the ack stage; without it the trace goes on, says so in
// a warning, and lists the stage as missing.
func (t *Tracer) attachAck(spec *ebpf.CollectionSpec, btf bool) {
	n := len(t.links)
	var errEntry error
	exits, ok := ackExitHooks[funcParams("tcp_v4_syn_recv_sock")]
	if !ok && t.trampolineErr == nil {
		errEntry = fmt.Errorf("tcp_v4_syn_recv_sock has %d parameters in this kernel's BTF, not the 6 or 7 backlog knows", funcParams("tcp_v4_syn_recv_sock"))
	}
	for _, h := range append(slices.Clone(ackEntryHooks), exits...) {
		if errEntry != nil {
			break
		}
		errEntry = t.attachHook(spec, h, true)
	}
	if errEntry == nil {
		t.ackHook = "fexit"
		return
	}
	for _, l := range t.links[n:] {
		l.Close()
	}
	t.links = t.links[:n]
	if !overflowReasonExists() {
		reason := fmt.Sprintf("needs BPF trampolines (fentry and fexit, Linux 5.5+, on tcp_v4_syn_recv_sock: %v) or Linux 6.15's drop reason TCP_LISTEN_OVERFLOW", errEntry)
		t.missing = append(t.missing, MissingStage{Stage: StageAck, Reason: reason})
		t.warnings = append(t.warnings, "drops at the final ACK (stage ack) are not traced: "+reason)
		return
	}
	kh := kfreeHook
	if tracepointArgs("kfree_skb") >= 4 { // Linux 6.11+: rx_sk, the listener that dropped
		kh = kfreeRxSkHook
	}
	if err := t.attachHook(spec, kh, btf); err != nil {
		reason := fmt.Sprintf("fentry and fexit on tcp_v4_syn_recv_sock: %v; kfree_skb: %v", errEntry, err)
		t.missing = append(t.missing, MissingStage{Stage: StageAck, Reason: reason})
		t.warnings = append(t.warnings, "drops at the final ACK (stage ack) are not traced: "+reason)
		return
	}
	t.ackHook = "kfree_skb"
}

// attachMember adds fentry on tcp_conn_request(), which names the
// SO_REUSEPORT member each SYN reached. Without it a SYN's member is the
// only one of its group meeting the drop condition, or unknown.
func (t *Tracer) attachMember(spec *ebpf.CollectionSpec) {
	if err := t.attachHook(spec, connRequestHook, true); err == nil {
		t.memberHook = "fentry"
		return
	}
	t.memberHook = "drops"
}

// overflowReasonExists: does the kernel name SKB_DROP_REASON_TCP_LISTEN_OVERFLOW
// (Linux 6.15+)? Below it, kfree_skb cannot tell a listen overflow from other drops.
func overflowReasonExists() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var reasons *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &reasons); err != nil {
		return false
	}
	for _, v := range reasons.Values {
		if v.Name == "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW" {
			return true
		}
	}
	return false
}

func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("trace: the kernel's verifier refused the eBPF programs (this kernel may be too old or built differently): %w", err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("trace: loading the eBPF programs was not permitted (a security policy may block bpf(2)): %w", err)
	}
	return fmt.Errorf("trace: loading the eBPF programs: %w", err)
}

func (t *Tracer) fillFilters() error {
	one := uint8(1)
	for _, p := range t.opts.Ports {
		if err := t.maps.WantPorts.Put(p, one); err != nil {
			return fmt.Errorf("trace: port filter: %w", err)
		}
	}
	if t.opts.OnlyNamespaces {
		for _, ns := range t.opts.Namespaces {
			if err := t.maps.WantNetns.Put(uint32(ns.Inode), one); err != nil {
				return fmt.Errorf("trace: namespace filter: %w", err)
			}
		}
	}
	return nil
}

// seed runs the tcp iterator once in every namespace: it adds the
// listeners that existed before the programs attached. A namespace that
// cannot be read becomes a warning.
func (t *Tracer) seed(spec *ebpf.CollectionSpec) {
	prog, err := t.loadProgram(spec, "seed_listeners")
	if err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("listeners opened before the trace are not known (loading the tcp iterator: %v)", err))
		return
	}
	defer prog.Close()
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("listeners opened before the trace are not known (tcp iterator: %v)", err))
		return
	}
	defer it.Close()
	run := func() error {
		rc, err := it.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	}
	for _, ns := range t.opts.Namespaces {
		var err error
		if ns.Path == "" {
			err = run()
		} else {
			err = netns.Do(ns.Path, run)
		}
		if err != nil {
			t.warnings = append(t.warnings, fmt.Sprintf("namespace %s: listeners opened before the trace are not known: %v", nameOr(ns), err))
		}
	}
	t.findOwners()
}

func nameOr(ns Namespace) string {
	if ns.Name != "" {
		return ns.Name
	}
	return fmt.Sprint(ns.Inode)
}

// findOwners looks up, with one /proc/*/fd walk, the owners of the
// listeners the iterator found (those have no listen(2) caller).
func (t *Tracer) findOwners() {
	want := map[uint32]struct{}{}
	var k uint64
	var v bpfMember
	it := t.maps.Socks.Iterate()
	for it.Next(&k, &v) {
		if v.Pid == 0 && v.Ino != 0 {
			want[uint32(v.Ino)] = struct{}{}
		}
	}
	if len(want) == 0 {
		return
	}
	res, err := procfd.Walk(t.opts.ProcRoot, want)
	if err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("owners of listeners opened before the trace are unknown: %v", err))
		return
	}
	t.ownerMu.Lock()
	defer t.ownerMu.Unlock()
	for ino, ps := range res.Owners {
		t.owners[uint64(ino)] = ps
	}
}

func netipAddrPort(k bpfLkey) netip.AddrPort {
	var a [16]byte
	copy(a[:], k.Addr[:])
	return netip.AddrPortFrom(addr(k.Family, a), k.Port)
}

func wallMinusMonotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// Monotonic returns CLOCK_MONOTONIC now, the clock of Event.Monotonic.
func Monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// Run reads events until ctx ends and calls fn (if not nil) with each, in
// the order they were recorded per CPU. It also counts them for Stats. It
// returns nil when ctx ends.
func (t *Tracer) Run(ctx context.Context, fn func(Event)) error {
	return t.read(ctx, t.reader, "events", func(b []byte) error {
		raw, err := decodeEvent(b)
		if err != nil {
			return err
		}
		e := t.complete(raw)
		t.tally.add(&e)
		if fn != nil {
			fn(e)
		}
		return nil
	})
}

// RunUnix reads the UNIX connects refused with EAGAIN until ctx ends and
// calls fn with each; run it beside Run. It returns nil when ctx ends.
// The caller finds the listener by Path (and Netns for an abstract name).
func (t *Tracer) RunUnix(ctx context.Context, fn func(UnixRefusal)) error {
	return t.read(ctx, t.ureader, "UNIX events", func(b []byte) error {
		raw, err := decodeUnixEvent(b)
		if err != nil {
			return err
		}
		u := raw.refusal()
		u.Time = time.Unix(0, int64(u.Monotonic)+t.offset.Load())
		u.Namespace = t.names[u.Netns]
		if relative := u.Path != "" && !strings.HasPrefix(u.Path, "@") && !filepath.IsAbs(u.Path); relative {
			// The kernel resolved it from the client's working directory.
			if cwd, err := os.Readlink(fmt.Sprintf("%s/%d/cwd", t.opts.ProcRoot, raw.Pid)); err == nil {
				u.Path = filepath.Join(cwd, u.Path)
			}
		}
		if fn != nil {
			fn(u)
		}
		return nil
	})
}

// read passes each record of a ring buffer to fn until ctx ends or the
// tracer closes.
func (t *Tracer) read(ctx context.Context, r *ringbuf.Reader, what string, fn func([]byte) error) error {
	var rec ringbuf.Record
	for {
		if ctx.Err() != nil {
			return nil
		}
		r.SetDeadline(time.Now().Add(100 * time.Millisecond))
		err := r.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Idle: follow wall-clock adjustments.
			t.offset.Store(int64(wallMinusMonotonic()))
			continue
		}
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("trace: reading %s: %w", what, err)
		}
		if err := fn(rec.RawSample); err != nil {
			return err
		}
	}
}

func (t *Tracer) complete(raw rawEvent) Event {
	e := raw.event()
	e.Time = time.Unix(0, int64(e.Monotonic)+t.offset.Load())
	e.Namespace = t.names[e.Netns]
	e.Processes = t.ownersOf(e.Inode, e.Processes)
	return e
}

// ownerRecheck bounds how often the owners of one listener are checked
// for being alive: one stat of /proc/PID per owner.
const ownerRecheck = time.Second

// ownersOf returns who holds socket inode now. The process that called
// listen(2) (caller, from the kernel side) is kept while it lives; a
// daemonizing server's pre-fork pid exits right after listen(), so when it
// or a cached owner is gone the owners are found again with a /proc walk
// for that inode.
func (t *Tracer) ownersOf(inode uint64, caller []snapshot.Process) []snapshot.Process {
	t.ownerMu.Lock()
	defer t.ownerMu.Unlock()
	if t.checked == nil {
		t.checked = map[uint64]time.Time{}
	}
	ps, known := t.owners[inode]
	if !known {
		ps = caller
	}
	if inode == 0 || time.Since(t.checked[inode]) < ownerRecheck && known {
		return ps
	}
	t.checked[inode] = time.Now()
	if len(ps) > 0 && t.alive(ps) {
		t.owners[inode] = ps
		return ps
	}
	res, err := procfd.Walk(t.opts.ProcRoot, map[uint32]struct{}{uint32(inode): {}})
	if err != nil || res.Owners[uint32(inode)] == nil {
		return ps // nothing better known
	}
	t.owners[inode] = res.Owners[uint32(inode)]
	return t.owners[inode]
}

func (t *Tracer) alive(ps []snapshot.Process) bool {
	for _, p := range ps {
		if _, err := os.Stat(fmt.Sprintf("%s/%d", t.opts.ProcRoot, p.PID)); err != nil {
			return false
		}
	}
	return true
}

// Stats returns, per listener, the events read so far by stage and the
// accept-queue waits measured since the trace started.
func (t *Tracer) Stats() ([]ListenerStats, error) {
	waits, err := t.readWaits()
	if err != nil {
		return nil, err
	}
	stats := t.tally.merge(waits, func(n uint64) string { return t.names[n] })
	owners, requested := t.listenerOwners()
	for i := range stats {
		if stats[i].Processes == nil {
			stats[i].Processes = owners[stats[i].ListenerID]
		}
		if r, ok := requested[stats[i].ListenerID]; ok {
			stats[i].RequestedBacklog = &r
		}
	}
	return stats, nil
}

// listenerOwners returns the owners of the listeners the kernel side
// knows, and the backlog those opened during the trace asked listen(2) for.
func (t *Tracer) listenerOwners() (map[ListenerID][]snapshot.Process, map[ListenerID]int64) {
	out := map[ListenerID][]snapshot.Process{}
	requested := map[ListenerID]int64{}
	t.mapsMu.RLock()
	defer t.mapsMu.RUnlock()
	if t.maps.Socks == nil {
		return out, requested
	}
	var k uint64
	var v bpfMember
	it := t.maps.Socks.Iterate()
	for it.Next(&k, &v) {
		id := ListenerID{Netns: uint64(v.K.Netns), Listener: netipAddrPort(v.K), Inode: v.Ino}
		var caller []snapshot.Process
		if v.Pid != 0 {
			comm := make([]byte, len(v.Comm))
			for i, c := range v.Comm {
				comm[i] = byte(c)
			}
			caller = []snapshot.Process{{PID: int(v.Pid), Comm: cString(comm)}}
		}
		if ps := t.ownersOf(v.Ino, caller); ps != nil {
			out[id] = ps
		}
		if v.RequestedKnown != 0 {
			requested[id] = int64(v.Requested)
		}
	}
	return out, requested
}

func (t *Tracer) readWaits() (map[ListenerID]*Histogram, error) {
	t.mapsMu.RLock()
	defer t.mapsMu.RUnlock()
	if t.maps.Waits == nil {
		return nil, errClosed
	}
	out := map[ListenerID]*Histogram{}
	var k bpfWkey
	var perCPU []bpfHist
	it := t.maps.Waits.Iterate()
	for it.Next(&k, &perCPU) {
		id := ListenerID{Netns: uint64(k.K.Netns), Listener: netipAddrPort(k.K), Inode: k.Ino}
		h := out[id]
		if h == nil {
			h = &Histogram{}
			out[id] = h
		}
		for i := range perCPU {
			c := &perCPU[i]
			o := Histogram{Slots: c.Slots, Count: c.Count, Sum: time.Duration(c.SumNs), Max: time.Duration(c.MaxNs)}
			h.Add(&o)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("trace: reading accept waits: %w", err)
	}
	return out, nil
}

// Counters returns the tracer's health counters.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	t.mapsMu.RLock()
	defer t.mapsMu.RUnlock()
	if t.maps.Counters == nil {
		return c, errClosed
	}
	for i, dst := range []*uint64{&c.Lost, &c.Unmatched, &c.Ambiguous} {
		var perCPU []uint64
		if err := t.maps.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("trace: reading counters: %w", err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	return c, nil
}

var errClosed = errors.New("trace: the tracer is closed")

// Close detaches and unloads everything; a Run in progress returns.
// Idempotent.
func (t *Tracer) Close() error {
	var err error
	t.closeOnce.Do(func() {
		if t.reader != nil {
			err = t.reader.Close()
		}
		if t.ureader != nil {
			err = errors.Join(err, t.ureader.Close())
		}
		t.closeLinks()
		t.mapsMu.Lock()
		t.closeMaps()
		t.mapsMu.Unlock()
	})
	return err
}

func (t *Tracer) closeLinks() {
	for i := len(t.links) - 1; i >= 0; i-- {
		t.links[i].Close()
	}
	t.links = nil
}

func (t *Tracer) closeMaps() {
	for _, m := range t.maps.all() {
		if m != nil {
			m.Close()
		}
	}
	t.maps = tracerMaps{}
}
