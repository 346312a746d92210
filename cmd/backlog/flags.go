package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/workload"
)

// newFlagSet returns a flag set whose parse errors are usage errors and
// whose -h prints the flags to out.
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("backlog "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses args; a bad flag is one line, not the whole usage.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err == flag.ErrHelp {
		fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usageError{err: fmt.Errorf("%s: %w (see '%s -h')", fs.Name(), err, fs.Name())}
	}
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("%s: unexpected argument %q (see '%s -h')", fs.Name(), fs.Arg(0), fs.Name())}
	}
	return nil
}

// filterFlags are the filters of every command that lists listeners.
type filterFlags struct {
	netns      netnsList
	netnsDirs  dirList
	ports      portList
	paths      pathList
	pids       intList
	processes  stringList
	pods       stringList
	containers stringList
	roots      rootList
	node       string
	noBPF      bool
	res        *workload.Resolver // made once: serve and top resolve often

	everyNS bool // set by options: every namespace was resolved
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.netns, "netns", "network namespace: `all`, self, a name under /run/netns, a path, pid:N, pod:NAMESPACE/NAME, or container:NAME (repeatable; default: all on the host, else the caller's own)")
	fs.Var(&f.netnsDirs, "netns-dir", "another `directory` of namespace bind mounts besides /run/netns (repeatable)")
	fs.Var(&f.ports, "port", "only TCP listeners on this local `port` (repeatable; with --path, either matches)")
	fs.Var(&f.paths, "path", "only UNIX listeners with this `name`: a path, @abstract, or a pattern such as '/run/php/*' or '@*' (repeatable)")
	fs.Var(&f.pids, "pid", "only listeners owned by this `pid` (repeatable)")
	fs.Var(&f.processes, "process", "only listeners owned by a process with this command `name` (repeatable)")
	fs.Var(&f.pods, "pod", "only listeners of this Kubernetes pod: `NAMESPACE/NAME`, NAME or UID (repeatable)")
	fs.Var(&f.containers, "container", "only listeners of the container with this `name` or id (repeatable)")
	fs.Var(&f.roots, "runtime-root", "state of a container runtime somewhere else than its default: `RUNTIME=DIR`, RUNTIME one of containerd (its --state), docker (its --data-root), containers (containers/storage root or run root of podman and CRI-O) (repeatable)")
	fs.BoolVar(&f.noBPF, "no-bpf", false, "read listeners and owners with sock_diag and /proc even where BPF iterators could load")
	fs.StringVar(&f.node, "node", "", "node name for workloads (default: $NODE_NAME, else the host name)")
}

// workloads returns the resolver that names pods and containers.
func (f *filterFlags) workloads() *workload.Resolver {
	if f.res != nil {
		return f.res
	}
	node := f.node
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		node, _ = os.Hostname()
	}
	roots := workload.DefaultRoots
	roots.Containerd = append(slices.Clone(roots.Containerd), f.roots.containerd...)
	roots.Docker = append(slices.Clone(roots.Docker), f.roots.docker...)
	roots.Storage = append(slices.Clone(roots.Storage), f.roots.storage...)
	f.res = &workload.Resolver{Roots: &roots, Node: node}
	return f.res
}

// options resolves the namespaces and returns the collection options, with
// a note to show when the default was narrowed (lack of privilege, or a
// caller inside another namespace).
func (f *filterFlags) options() (collect.Options, string, error) {
	dirs := append(slices.Clone(netns.DefaultDirs), f.netnsDirs...)
	res := f.workloads()
	r, err := collect.ResolveWith(f.netns, "", dirs, res)
	if errors.Is(err, collect.ErrBadSpec) {
		return collect.Options{}, "", usageError{fmt.Errorf("backlog: %w", err)}
	}
	if err != nil {
		return collect.Options{}, "", err
	}
	f.everyNS = r.All
	opts := collect.Options{Targets: r.Targets, Refused: r.Refused, Ports: f.ports, Paths: f.paths, PIDs: f.pids, Processes: f.processes,
		Pods: f.pods, Containers: f.containers, Workloads: res, NoBPF: f.noBPF}
	// A hostNetwork pod's namespace is the host's: keep only its listeners.
	for _, spec := range f.netns {
		if pod, ok := strings.CutPrefix(spec, "pod:"); ok {
			opts.Pods = append(slices.Clone(opts.Pods), pod)
		} else if ctr, ok := strings.CutPrefix(spec, "container:"); ok {
			opts.Containers = append(slices.Clone(opts.Containers), ctr)
		}
	}
	return opts, r.Note, nil
}

// rootList collects --runtime-root RUNTIME=DIR.
type rootList struct{ containerd, docker, storage []string }

func (r *rootList) String() string { return "" }
func (r *rootList) Set(s string) error {
	kind, dir, ok := strings.Cut(s, "=")
	if !ok || dir == "" {
		return fmt.Errorf("%q is not RUNTIME=DIR", s)
	}
	switch kind {
	case "containerd":
		r.containerd = append(r.containerd, dir)
	case "docker":
		r.docker = append(r.docker, dir)
	case "containers", "podman", "crio":
		r.storage = append(r.storage, dir)
	default:
		return fmt.Errorf("unknown runtime %q (want containerd, docker or containers)", kind)
	}
	return nil
}

// filtering reports whether a listener filter was given.
func (f *filterFlags) filtering() bool {
	return len(f.ports)+len(f.paths)+len(f.pids)+len(f.processes)+len(f.pods)+len(f.containers) > 0
}

// absent says which --pid and --process name no running process: a
// filter that matches nothing because its process does not exist says so,
// instead of printing nothing.
func (f *filterFlags) absent() []string {
	var out []string
	for _, pid := range f.pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			out = append(out, fmt.Sprintf("--pid %d: no such process", pid))
		}
	}
	if len(f.processes) == 0 {
		return out
	}
	running := map[string]bool{}
	if names, err := filepath.Glob("/proc/[0-9]*/comm"); err == nil {
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil {
				running[strings.TrimSpace(string(b))] = true
			}
		}
	}
	for _, name := range f.processes {
		if !running[name] {
			out = append(out, fmt.Sprintf("--process %s: no running process has that command name (see /proc/PID/comm, at most 15 characters)", name))
		}
	}
	return out
}

// netnsList is --netns, repeatable; an empty value is refused at Resolve.
type netnsList []string

func (p *netnsList) String() string { return strings.Join(*p, ",") }
func (p *netnsList) Set(s string) error {
	*p = append(*p, s)
	return nil
}

// dirList is --netns-dir: directories that exist.
type dirList []string

func (p *dirList) String() string { return fmt.Sprint(*p) }
func (p *dirList) Set(s string) error {
	st, err := os.Stat(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("%q is not a directory", s)
	}
	*p = append(*p, s)
	return nil
}

type portList []uint16

func (p *portList) String() string { return fmt.Sprint(*p) }
func (p *portList) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q is not a TCP port (1-65535)", s)
	}
	*p = append(*p, uint16(n))
	return nil
}

type pathList []string

func (p *pathList) String() string { return fmt.Sprint(*p) }
func (p *pathList) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty path")
	}
	if err := collect.ValidatePaths([]string{s}); err != nil {
		return err
	}
	*p = append(*p, s)
	return nil
}

type intList []int

func (p *intList) String() string { return fmt.Sprint(*p) }
func (p *intList) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a process id", s)
	}
	*p = append(*p, n)
	return nil
}

type stringList []string

func (p *stringList) String() string { return fmt.Sprint(*p) }
func (p *stringList) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	*p = append(*p, s)
	return nil
}
