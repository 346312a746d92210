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

// Resolve turns --netns specs into targets. No spec is the default: every
// namespace ("all") when this process may enter them and runs in the
// host's namespace; its own namespace, with a note that says why, when it
// may not or when it runs in another namespace (`ip netns exec NS backlog`
// means NS, as with ss). Each spec is "all", "self", a name under one of
// dirs (`ip netns` names), a path to an nsfs file, "pid:N", a pod
// ("pod:NAMESPACE/NAME", "pod:NAME", "pod:UID") or a container
// ("container:NAME", or a bare NAME no bind mount has); several are
// joined, each namespace once. A spec that names no namespace is ErrBadSpec.
func Resolve(specs []string, procRoot string, dirs []string) (Resolution, error) {
	return ResolveWith(specs, procRoot, dirs, nil)
}

// ResolveWith is Resolve with the resolver that names pods and containers
// (nil: one with the default runtime roots).
func ResolveWith(specs []string, procRoot string, dirs []string, res *workload.Resolver) (Resolution, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	initID, _ := netns.InitID(procRoot) // once, not per namespace
	if len(specs) == 0 {
		return resolveDefault(procRoot, dirs, initID)
	}
	var r Resolution
	have := map[uint64]bool{}
	for _, spec := range specs {
		one, err := resolveOne(spec, procRoot, dirs, initID, res)
		if err != nil {
			return Resolution{}, err
		}
		r.Refused = append(r.Refused, one.Refused...)
		r.All = r.All || one.All
		for _, t := range one.Targets {
			if !have[t.Inode] {
				have[t.Inode] = true
				r.Targets = append(r.Targets, t)
			}
		}
	}
	return r, nil
}

func resolveDefault(procRoot string, dirs []string, initID netns.ID) (Resolution, error) {
	self, err := selfTarget(procRoot, dirs, initID)
	if err != nil {
		return Resolution{}, err
	}
	if eff, err := caps.Effective(); err != nil || !eff.Has(caps.SysAdmin) {
		return Resolution{Targets: []Target{self}, Note: fmt.Sprintf("%v; showing this namespace only (%s)", ErrNeedSysAdmin, self.Name)}, nil
	}
	if initID != (netns.ID{}) && self.Inode != initID.Inode {
		return Resolution{Targets: []Target{self}, Note: fmt.Sprintf(
			"running in network namespace %s, not the host's: showing it only (--netns all shows every namespace)", self.Name)}, nil
	}
	return discoverAll(procRoot, dirs, initID)
}

func resolveOne(spec, procRoot string, dirs []string, initID netns.ID, res *workload.Resolver) (Resolution, error) {
	switch {
	case spec == "":
		return Resolution{}, fmt.Errorf("%w: empty value (want all, self, a name, a path, pid:N, pod:NAMESPACE/NAME or container:NAME)", ErrBadSpec)
	case spec == "self":
		t, err := selfTarget(procRoot, dirs, initID)
		return Resolution{Targets: []Target{t}}, err
	case spec == "all":
		if eff, err := caps.Effective(); err != nil || !eff.Has(caps.SysAdmin) {
			return Resolution{}, fmt.Errorf("--netns all: %w; run as root, or use --netns self", ErrNeedSysAdmin)
		}
		return discoverAll(procRoot, dirs, initID)
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(spec[len("pid:"):])
		if err != nil || pid <= 0 {
			return Resolution{}, fmt.Errorf("%w %q: pid:N takes a process id", ErrBadSpec, spec)
		}
		if _, err := os.Stat(fmt.Sprintf("%s/%d", procRoot, pid)); errors.Is(err, os.ErrNotExist) {
			return Resolution{}, fmt.Errorf("%w %q: no process %d", ErrBadSpec, spec, pid)
		}
		return one(procRoot, fmt.Sprintf("%s/%d/ns/net", procRoot, pid), dirs, initID)
	case strings.HasPrefix(spec, "pod:"):
		pod := spec[len("pod:"):]
		return workloadTargets(procRoot, res, spec, initID, func(w *snapshot.Workload) bool { return MatchPod(w, pod) })
	case strings.HasPrefix(spec, "container:"):
		ctr := spec[len("container:"):]
		return workloadTargets(procRoot, res, spec, initID, func(w *snapshot.Workload) bool { return MatchContainer(w, ctr) })
	case strings.Contains(spec, "/"):
		return one(procRoot, spec, dirs, initID)
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, spec)
		if _, err := os.Stat(p); err == nil {
			return one(procRoot, p, dirs, initID)
		}
	}
	if r, err := workloadTargets(procRoot, res, spec, initID, func(w *snapshot.Workload) bool { return MatchContainer(w, spec) }); err == nil {
		return r, nil
	}
	return Resolution{}, fmt.Errorf("%w %q: no namespace of that name under %s and no container of that name (want all, self, a name, a path, pid:N, pod:NAMESPACE/NAME or container:NAME)",
		ErrBadSpec, spec, strings.Join(dirs, ", "))
}

// workloadTargets are the namespaces of the processes whose workload
// matches: one for a pod with its own namespace, the host's for a
// hostNetwork pod (the listeners are then kept by Options.Pods).
func workloadTargets(procRoot string, res *workload.Resolver, spec string, initID netns.ID, match func(*snapshot.Workload) bool) (Resolution, error) {
	if res == nil {
		res = &workload.Resolver{ProcRoot: procRoot}
	}
	d, err := os.Open(procRoot)
	if err != nil {
		return Resolution{}, fmt.Errorf("--netns %s: %w", spec, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return Resolution{}, fmt.Errorf("--netns %s: %w", spec, err)
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
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
		return Resolution{}, fmt.Errorf("%w %q: no running process of that workload", ErrBadSpec, spec)
	}
	return Resolution{Targets: ts}, nil
}

// one resolves the nsfs file at path, named as a scan of all would name it.
func one(procRoot, path string, dirs []string, initID netns.ID) (Resolution, error) {
	id, err := netns.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return Resolution{}, fmt.Errorf("%w %q: no such file", ErrBadSpec, path)
	}
	if errors.Is(err, os.ErrPermission) {
		return Resolution{}, fmt.Errorf("--netns: %s refused with %s: %s", path, errnoName(err), refusedAdvice())
	}
	if err != nil {
		return Resolution{}, fmt.Errorf("--netns: %w", err)
	}
	if !netns.IsNetns(path) {
		return Resolution{}, fmt.Errorf("%w %q: not a network namespace (want a file such as /run/netns/NAME or /proc/PID/ns/net)", ErrBadSpec, path)
	}
	f := netns.Found{ID: id, Path: path, Mount: netns.MountOf(id, dirs)}
	if f.Mount == "" {
		f.PID = netns.LowestPID(procRoot, id)
	}
	return Resolution{Targets: []Target{target(procRoot, f, initID)}}, nil
}

// selfTarget is this process's own namespace, read without setns (so
// without privilege) and named as a scan of all would name it.
func selfTarget(procRoot string, dirs []string, initID netns.ID) (Target, error) {
	id, err := netns.Own(procRoot)
	if err != nil {
		return Target{}, fmt.Errorf("finding this process's network namespace: %w", err)
	}
	f := netns.Found{ID: id, Mount: netns.MountOf(id, dirs)}
	if f.Mount == "" && id != initID {
		f.PID = netns.LowestPID(procRoot, id)
	}
	t := target(procRoot, f, initID)
	t.Path = "" // the caller's own: no setns
	return t, nil
}

func discoverAll(procRoot string, dirs []string, initID netns.ID) (Resolution, error) {
	found, refused, err := netns.Discover(procRoot, dirs)
	if err != nil {
		return Resolution{}, err
	}
	ts := make([]Target, len(found))
	for i, f := range found {
		ts[i] = target(procRoot, f, initID)
	}
	return Resolution{Targets: ts, Refused: refused, All: true}, nil
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
