// Package workload names who runs a process: the Kubernetes pod and
// container, or the plain container of docker, podman, containerd or
// CRI-O. It reads only node-local state, read-only: the process's cgroup
// path (pod UID, container id) and the runtimes' own files for names.
package workload

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Roots are where the runtimes keep their state. A root that does not
// exist costs one failed stat when an unknown container is looked up.
type Roots struct {
	// Containerd are containerd state directories (its --state,
	// /run/containerd): bundles at
	// io.containerd.runtime.v2.task/NAMESPACE/ID/config.json, where the
	// CRI plugin writes the pod's names as annotations.
	Containerd []string
	// Docker are docker data roots (/var/lib/docker): the name is in
	// containers/ID/config.v2.json.
	Docker []string
	// Storage are containers/storage roots and run roots, shared by podman
	// and CRI-O: names in overlay-containers/containers.json, CRI-O's
	// annotations in overlay-containers/ID/userdata/config.json (vfs-,
	// btrfs-containers... with other storage drivers).
	Storage []string
}

// DefaultRoots are the runtimes' default places.
var DefaultRoots = Roots{
	Containerd: []string{"/run/containerd"},
	Docker:     []string{"/var/lib/docker"},
	Storage:    []string{"/run/containers/storage", "/var/lib/containers/storage"},
}

// The files under each root, also what a DaemonSet mounts (docs/deployment.md).
const (
	ContainerdTasks   = "io.containerd.runtime.v2.task"
	DockerContainers  = "containers"
	StorageContainers = "overlay-containers"
)

// How long a lookup is trusted: names are read when a container is first
// seen (a new cgroup path), and again after positiveTTL so a rename shows;
// a path that named nothing is retried after negativeTTL.
const (
	positiveTTL = 10 * time.Minute
	negativeTTL = time.Minute
	maxCached   = 16384
)

// Resolver names the workloads of processes, caching by cgroup path. Safe
// for concurrent use; the zero value reads /proc and DefaultRoots.
type Resolver struct {
	ProcRoot string
	Roots    *Roots
	// Node is set on every workload found (Workload.Node).
	Node string

	mu      sync.Mutex
	cache   map[string]entry
	storage map[string]storageFile
	now     func() time.Time // tests
}

type entry struct {
	w  *snapshot.Workload // nil: no workload
	at time.Time
}

type storageFile struct {
	mod   time.Time
	size  int64
	names map[string]string
}

func (r *Resolver) roots() *Roots {
	if r.Roots == nil {
		return &DefaultRoots
	}
	return r.Roots
}

func (r *Resolver) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// PID returns the workload of a process, nil when it runs in none (or has
// exited). The result is shared: do not modify it.
func (r *Resolver) PID(pid int) *snapshot.Workload {
	procRoot := r.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil
	}
	return r.Cgroup(string(b))
}

// Cgroup returns the workload of a process from the contents of its
// /proc/PID/cgroup.
func (r *Resolver) Cgroup(cgroup string) *snapshot.Workload {
	ref, _ := ParseCgroup(cgroup)
	if ref.Path == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if e, ok := r.cache[ref.Path]; ok {
		ttl := negativeTTL // nothing found, or an id without names yet
		if e.w != nil && (e.w.Container != "" || e.w.Pod != "") {
			ttl = positiveTTL
		}
		if now.Sub(e.at) < ttl {
			return e.w
		}
	}
	w := r.lookup(ref)
	if w != nil {
		w.Node = r.Node
	}
	if r.cache == nil || len(r.cache) >= maxCached {
		r.cache = make(map[string]entry) // containers come and go: start over
	}
	r.cache[ref.Path] = entry{w, now}
	return w
}

// lookup reads the runtimes' state for ref. A Kubernetes identity wins
// over a plain name; the cgroup's pod UID fills what annotations lack.
func (r *Resolver) lookup(ref Ref) *snapshot.Workload {
	roots := r.roots()
	var found *snapshot.Workload
	keep := func(w snapshot.Workload) bool {
		if found == nil || found.Pod == "" && w.Pod != "" {
			found = &w
		}
		return found.Pod != ""
	}
	id := ref.ContainerID
	switch {
	case id != "":
		for _, root := range roots.Containerd {
			if w, ok := containerdBundle(root, "", id); ok && keep(w) {
				break
			}
		}
		if found == nil || found.Pod == "" {
			for _, root := range roots.Storage {
				if w, ok := r.storageContainer(root, id, ref.Runtime); ok && keep(w) {
					break
				}
			}
		}
		if found == nil || found.Pod == "" {
			for _, root := range roots.Docker {
				if w, ok := dockerContainer(root, id); ok && keep(w) {
					break
				}
			}
		}
	case ref.PodUID == "":
		// ctr and other plain containerd clients: /NAMESPACE/ID.
		if ns, cid, ok := containerdRef(ref.Path); ok {
			for _, root := range roots.Containerd {
				if w, ok := containerdBundle(root, ns, cid); ok {
					keep(w)
					break
				}
			}
		}
	}
	if found == nil && (ref.PodUID != "" || id != "") {
		found = &snapshot.Workload{Runtime: ref.Runtime}
	}
	if found == nil {
		return nil
	}
	if found.PodUID == "" {
		found.PodUID = ref.PodUID
	}
	if found.ContainerID == "" {
		found.ContainerID = id
	}
	if found.Runtime == "" {
		found.Runtime = ref.Runtime
	}
	return found
}

// containerdBundle reads ROOT/io.containerd.runtime.v2.task/NS/ID/config.json,
// in every namespace when ns is empty. A bundle without the CRI plugin's
// annotations is a plain containerd container, named by its id; one in
// docker's "moby" namespace is left to docker's own state.
func containerdBundle(root, ns, id string) (snapshot.Workload, bool) {
	tasks := filepath.Join(root, ContainerdTasks)
	namespaces := []string{ns}
	if ns == "" {
		d, err := os.ReadDir(tasks)
		if err != nil {
			return snapshot.Workload{}, false
		}
		namespaces = namespaces[:0]
		for _, e := range d {
			namespaces = append(namespaces, e.Name())
		}
	}
	for _, ns := range namespaces {
		b, err := os.ReadFile(filepath.Join(tasks, ns, id, "config.json"))
		if err != nil {
			continue
		}
		w, ok, err := ParseOCIConfig(b)
		if err != nil {
			continue
		}
		if !ok {
			if ns == "moby" {
				return snapshot.Workload{}, false
			}
			w = snapshot.Workload{Runtime: Containerd, Container: id}
		}
		w.ContainerID = id
		return w, true
	}
	return snapshot.Workload{}, false
}

// storageContainer looks id up in a containers/storage root: CRI-O's
// annotations in its userdata/config.json, else its name in
// containers.json (podman's, or CRI-O's when the cgroup says crio).
func (r *Resolver) storageContainer(root, id, hint string) (snapshot.Workload, bool) {
	dirs, _ := filepath.Glob(filepath.Join(root, "*-containers"))
	for _, dir := range dirs {
		if b, err := os.ReadFile(filepath.Join(dir, id, "userdata", "config.json")); err == nil {
			if w, ok, err := ParseOCIConfig(b); err == nil && ok {
				w.ContainerID = id
				return w, true
			}
		}
		name, ok := r.storageNames(filepath.Join(dir, "containers.json"))[id]
		if !ok {
			continue
		}
		runtime := Podman
		if hint == CRIO {
			runtime = CRIO
		}
		return snapshot.Workload{Runtime: runtime, Container: name, ContainerID: id}, true
	}
	return snapshot.Workload{}, false
}

// storageNames reads a containers.json again only when it changed.
// Called with r.mu held.
func (r *Resolver) storageNames(path string) map[string]string {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if f, ok := r.storage[path]; ok && f.mod.Equal(st.ModTime()) && f.size == st.Size() {
		return f.names
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	names, err := ParseContainersJSON(b)
	if err != nil {
		return nil
	}
	if r.storage == nil {
		r.storage = make(map[string]storageFile)
	}
	r.storage[path] = storageFile{st.ModTime(), st.Size(), names}
	return names
}

// dockerContainer reads ROOT/containers/ID/config.v2.json.
func dockerContainer(root, id string) (snapshot.Workload, bool) {
	b, err := os.ReadFile(filepath.Join(root, DockerContainers, id, "config.v2.json"))
	if err != nil {
		return snapshot.Workload{}, false
	}
	w, err := ParseDockerConfig(b)
	if err != nil {
		return snapshot.Workload{}, false
	}
	if w.ContainerID == "" {
		w.ContainerID = id
	}
	return w, true
}
