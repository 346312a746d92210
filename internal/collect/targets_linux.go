package collect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/caps"
	"github.com/backlog-dev/backlog/internal/netns"
	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/workload"
)

// ErrBadSpec is a --netns value that names no namespace.
var ErrBadSpec = errors.New("bad --netns")

// ErrNeedSysAdmin means other namespaces were asked for without the
// privilege to enter them.
var ErrNeedSysAdmin = errors.New("reading other network namespaces needs root or CAP_SYS_ADMIN")

// Resolve turns a --netns SPEC into targets: "all" (the default, "", when
// this process may enter namespaces), "self", a name under one of dirs
// (`ip netns` names), a path to an nsfs file, "pid:N", a pod
// ("pod:NAMESPACE/NAME", "pod:NAME" or "pod:UID"), or a container
// ("container:NAME", or a bare NAME that no bind mount has). Without
// CAP_SYS_ADMIN the default falls back to "self" and warning says why.
func Resolve(spec, procRoot string, dirs []string) (targets []Target, warning string, err error) {
	return ResolveWith(spec, procRoot, dirs, nil)
}

// ResolveWith is Resolve with the resolver that names pods and containers
// (nil: one with the default runtime roots).
func ResolveWith(spec, procRoot string, dirs []string, res *workload.Resolver) (targets []Target, warning string, err error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if spec == "" {
		spec = "all"
		if eff, err := caps.Effective(); err != nil || !eff.Has(caps.SysAdmin) {
			return []Target{{}}, ErrNeedSysAdmin.Error() + "; showing this namespace only", nil
		}
	}
	switch {
	case spec == "self":
		return []Target{{}}, "", nil
	case spec == "all":
		if eff, err := caps.Effective(); err != nil || !eff.Has(caps.SysAdmin) {
			return nil, "", fmt.Errorf("--netns all: %w; run as root, or use --netns self", ErrNeedSysAdmin)
		}
		return discoverAll(procRoot, dirs)
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(spec[len("pid:"):])
		if err != nil || pid <= 0 {
			return nil, "", fmt.Errorf("%w %q: pid:N takes a process id", ErrBadSpec, spec)
		}
		return one(procRoot, fmt.Sprintf("%s/%d/ns/net", procRoot, pid), netns.Found{PID: pid})
	case strings.HasPrefix(spec, "pod:"):
		pod := spec[len("pod:"):]
		return workloadTargets(procRoot, res, spec, func(w *snapshot.Workload) bool { return MatchPod(w, pod) })
	case strings.HasPrefix(spec, "container:"):
		ctr := spec[len("container:"):]
		return workloadTargets(procRoot, res, spec, func(w *snapshot.Workload) bool { return MatchContainer(w, ctr) })
	case strings.Contains(spec, "/"):
		return one(procRoot, spec, netns.Found{Mount: filepath.Base(spec)})
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, spec)
		if _, err := os.Stat(p); err == nil {
			return one(procRoot, p, netns.Found{Mount: spec})
		}
	}
	if ts, _, err := workloadTargets(procRoot, res, spec, func(w *snapshot.Workload) bool { return MatchContainer(w, spec) }); err == nil {
		return ts, "", nil
	}
	return nil, "", fmt.Errorf("%w %q: no namespace of that name under %s and no container of that name (want all, self, a name, a path, pid:N, pod:NAMESPACE/NAME or container:NAME)",
		ErrBadSpec, spec, strings.Join(dirs, ", "))
}

// workloadTargets are the namespaces of the processes whose workload
// matches: one for a pod with its own namespace, the host's for a
// hostNetwork pod (the listeners are then kept by Options.Pods).
func workloadTargets(procRoot string, res *workload.Resolver, spec string, match func(*snapshot.Workload) bool) ([]Target, string, error) {
	if res == nil {
		res = &workload.Resolver{ProcRoot: procRoot}
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, "", fmt.Errorf("--netns %s: %w", spec, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, "", fmt.Errorf("--netns %s: %w", spec, err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	initID, _ := netns.InitID(procRoot)
	seen := make(map[netns.ID]bool)
	var ts []Target
	for _, pid := range pids {
		if !match(res.PID(pid)) {
			continue
		}
		path := fmt.Sprintf("%s/%d/ns/net", procRoot, pid)
		id, err := netns.Stat(path)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		ts = append(ts, target(procRoot, netns.Found{ID: id, Path: path, PID: pid}, initID))
	}
	if len(ts) == 0 {
		return nil, "", fmt.Errorf("%w %q: no running process of that workload", ErrBadSpec, spec)
	}
	return ts, "", nil
}

func one(procRoot, path string, f netns.Found) ([]Target, string, error) {
	id, err := netns.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: no namespace at %s", ErrBadSpec, path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("--netns: %w", err)
	}
	f.ID, f.Path = id, path
	initID, _ := netns.InitID(procRoot)
	return []Target{target(procRoot, f, initID)}, "", nil
}

func discoverAll(procRoot string, dirs []string) ([]Target, string, error) {
	found, denied, err := netns.Discover(procRoot, dirs)
	if err != nil {
		return nil, "", err
	}
	var warning string
	if denied > 0 {
		warning = fmt.Sprintf("the namespaces of %d process(es) could not be inspected (/proc/PID/ns/net needs root or CAP_SYS_PTRACE); namespaces only they hold are missing", denied)
	}
	initID, _ := netns.InitID(procRoot) // once, not per namespace
	ts := make([]Target, len(found))
	for i, f := range found {
		ts[i] = target(procRoot, f, initID)
	}
	return ts, warning, nil
}

// target names a found namespace (netns.Name) from what /proc says of a
// process inside it; initID is the initial namespace's (zero when unknown).
func target(procRoot string, f netns.Found, initID netns.ID) Target {
	isInit := initID != (netns.ID{}) && initID == f.ID
	var cgroup, comm string
	if f.PID > 0 {
		dir := procRoot + "/" + strconv.Itoa(f.PID)
		if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
			cgroup = string(b)
		}
		if b, err := os.ReadFile(dir + "/comm"); err == nil {
			comm = strings.TrimSpace(string(b))
		}
	}
	t := Target{Path: f.Path, Name: netns.Name(f, isInit, cgroup, comm), Inode: f.ID.Inode, PID: f.PID}
	if isInit {
		t.PID = 0 // the host's namespace is no workload's, hostNetwork pods' included
	}
	return t
}
