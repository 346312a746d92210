package netns

import (
	"regexp"
	"strconv"
	"strings"
)

// Found is one discovered namespace.
type Found struct {
	ID ID
	// Path opens it: the /run/netns bind mount when there is one (it
	// outlives processes), else /proc/PID/ns/net of its first process.
	Path string
	// Mount is the name of its bind mount under a netns directory
	// (`ip netns` names), empty when it has none.
	Mount string
	// PID is one process inside it (the lowest), 0 when none was seen.
	PID int
}

// Refusal is a process whose network namespace could not be identified:
// stat(2) of its /proc/PID/ns/net failed with Err (EACCES: the kernel's
// ptrace_may_access() refused, for lack of CAP_SYS_PTRACE or by a security
// module or hidepid).
type Refusal struct {
	PID int
	Err error
}

// Name is the human name of a namespace, in order of preference: "host"
// for init's, its `ip netns` name, the container or pod that runs in it
// (from the cgroup path of a process inside), else "pid:N (comm)".
func Name(f Found, isInit bool, cgroup, comm string) string {
	switch {
	case isInit:
		return "host"
	case f.Mount != "":
		return f.Mount
	}
	if c := Container(cgroup); c != "" {
		return c
	}
	if f.PID != 0 {
		if comm != "" {
			return "pid:" + strconv.Itoa(f.PID) + " (" + comm + ")"
		}
		return "pid:" + strconv.Itoa(f.PID)
	}
	return "inode:" + strconv.FormatUint(f.ID.Inode, 10)
}

var (
	// Kubernetes: cgroupfs ".../kubepods/burstable/pod<uid>/<ctr>" or
	// systemd "kubepods-burstable-pod<uid with _>.slice". All containers of
	// a pod share its network namespace, so the pod names it.
	podRe = regexp.MustCompile(`kubepods.*?[/-]pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})`)
	// Runtimes: docker-<id>.scope, /docker/<id>, cri-containerd-<id>.scope,
	// crio-<id>.scope, libpod-<id>.scope.
	ctrRe = regexp.MustCompile(`(docker|cri-containerd|crio|libpod|containerd)[-/]([0-9a-f]{64})`)
)

var runtimeNames = map[string]string{
	"docker": "docker", "cri-containerd": "containerd", "containerd": "containerd",
	"crio": "crio", "libpod": "podman",
}

// Container returns "pod:<uid>" or "<runtime>:<short id>" from the contents
// of /proc/PID/cgroup, or "" when the process is in no known container.
func Container(cgroup string) string {
	for _, line := range strings.Split(cgroup, "\n") {
		// "hierarchy-ID:controllers:path"; the v2 line is "0::path".
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := parts[2]
		if m := podRe.FindStringSubmatch(path); m != nil {
			return "pod:" + strings.ReplaceAll(m[1], "_", "-")
		}
		if m := ctrRe.FindStringSubmatch(path); m != nil {
			return runtimeNames[m[1]] + ":" + m[2][:12]
		}
	}
	return ""
}
