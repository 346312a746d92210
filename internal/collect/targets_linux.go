package collect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/caps"
	"github.com/backlog-dev/backlog/internal/netns"
)

// ErrBadSpec is a --netns value that names no namespace.
var ErrBadSpec = errors.New("bad --netns")

// ErrNeedSysAdmin means other namespaces were asked for without the
// privilege to enter them.
var ErrNeedSysAdmin = errors.New("reading other network namespaces needs root or CAP_SYS_ADMIN")

// Resolve turns a --netns SPEC into targets: "all" (the default, "", when
// this process may enter namespaces), "self", a name under one of dirs
// (`ip netns` names), a path to an nsfs file, or "pid:N". Without
// CAP_SYS_ADMIN the default falls back to "self" and warning says why.
func Resolve(spec, procRoot string, dirs []string) (targets []Target, warning string, err error) {
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
	case strings.Contains(spec, "/"):
		return one(procRoot, spec, netns.Found{Mount: filepath.Base(spec)})
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, spec)
		if _, err := os.Stat(p); err == nil {
			return one(procRoot, p, netns.Found{Mount: spec})
		}
	}
	return nil, "", fmt.Errorf("%w %q: no namespace of that name under %s (want all, self, a name, a path or pid:N)",
		ErrBadSpec, spec, strings.Join(dirs, ", "))
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
	return Target{Path: f.Path, Name: netns.Name(f, isInit, cgroup, comm), Inode: f.ID.Inode}
}
