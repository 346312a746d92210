package workload

import (
	"regexp"
	"strings"
)

// Ref is what the cgroup path of a process says about its workload.
type Ref struct {
	// Path is the cgroup path it was read from.
	Path string
	// PodUID is the Kubernetes pod UID from a kubepods path, dashed.
	PodUID string
	// ContainerID is the innermost 64-hex container id in the path.
	ContainerID string
	// Runtime is what the path says of the runtime (docker-<id>.scope,
	// libpod-<id>.scope, crio-<id>.scope, cri-containerd-<id>.scope);
	// empty when it does not say (the cgroupfs layout of kubelet).
	Runtime string
}

// Runtime names, the values of Workload.Runtime.
const (
	Docker     = "docker"
	Podman     = "podman"
	Containerd = "containerd"
	CRIO       = "crio"
)

var (
	// kubelet: cgroupfs ".../kubepods/burstable/pod<uid>/<ctr>", systemd
	// "kubepods-burstable-pod<uid with _>.slice".
	podRe = regexp.MustCompile(`kubepods.*?[/-]pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})`)
	hexRe = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// prefixes of a container's cgroup directory, by the runtime that makes it.
var prefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", Containerd},
	{"docker-", Docker},
	{"libpod-", Podman},
	{"crio-", CRIO},
}

// ParseCgroup reads the contents of /proc/PID/cgroup. Hybrid hosts list
// several hierarchies: the first line that names a pod or a container
// wins, the v2 line ("0::path") first.
func ParseCgroup(s string) (Ref, bool) {
	var paths []string
	for _, line := range strings.Split(s, "\n") {
		// "hierarchy-ID:controllers:path"
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[2] == "" || parts[2] == "/" {
			continue
		}
		if parts[0] == "0" {
			paths = append([]string{parts[2]}, paths...)
		} else {
			paths = append(paths, parts[2])
		}
	}
	for _, p := range paths {
		if r, ok := parsePath(p); ok {
			return r, true
		}
	}
	if len(paths) > 0 {
		return Ref{Path: paths[0]}, false
	}
	return Ref{}, false
}

// parsePath finds a pod UID and the innermost container id in one path.
func parsePath(p string) (Ref, bool) {
	r := Ref{Path: p}
	if m := podRe.FindStringSubmatch(p); m != nil {
		r.PodUID = strings.ToLower(strings.ReplaceAll(m[1], "_", "-"))
	}
	elems := strings.Split(p, "/")
	for i := len(elems) - 1; i >= 0 && r.ContainerID == ""; i-- {
		e := strings.TrimSuffix(elems[i], ".scope")
		runtime := ""
		for _, pr := range prefixes {
			if strings.HasPrefix(e, pr.prefix) {
				e, runtime = e[len(pr.prefix):], pr.runtime
				break
			}
		}
		if hexRe.MatchString(e) {
			r.ContainerID, r.Runtime = e, runtime
			if runtime == "" && i > 0 && elems[i-1] == "docker" {
				r.Runtime = Docker // cgroupfs driver: /docker/<id>
			}
		}
	}
	return r, r.PodUID != "" || r.ContainerID != ""
}

// containerdRef is a cgroup path of the form /NAMESPACE/ID that ctr and
// other plain containerd clients make, ID being any name; ok is false
// for paths of another form.
func containerdRef(p string) (namespace, id string, ok bool) {
	elems := strings.Split(strings.Trim(p, "/"), "/")
	if len(elems) != 2 || !safeName(elems[0]) || !safeName(elems[1]) {
		return "", "", false
	}
	return elems[0], elems[1], true
}

// safeName is a path element that cannot climb out of a directory.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}
