package collect

import (
	"slices"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
	"github.com/backlog-dev/backlog/internal/workload"
)

// addWorkloads names the pod or container of each namespace (from its
// lowest process) and of each listener (from its owners). See
// docs/json.md for how each case is decided.
func addWorkloads(snap *snapshot.Snapshot, targets []Target, res *workload.Resolver) {
	snap.Node = res.Node
	byPID := make(map[int]*snapshot.Workload)
	of := func(pid int) *snapshot.Workload {
		w, ok := byPID[pid]
		if !ok {
			w = res.PID(pid)
			byPID[pid] = w
		}
		return w
	}
	nsWorkload := make(map[uint64]*snapshot.Workload)
	for i := range snap.Namespaces {
		ns := &snap.Namespaces[i]
		if i >= len(targets) || targets[i].PID <= 0 {
			continue
		}
		if w := of(targets[i].PID); w != nil {
			// The containers of a pod share its namespace: it is the pod's.
			ns.Workload = podOf(w)
			nsWorkload[ns.Inode] = ns.Workload
		}
	}
	for i := range snap.Listeners {
		l := &snap.Listeners[i]
		var ws []*snapshot.Workload
		for _, p := range l.Processes {
			ws = append(ws, of(p.PID))
		}
		l.Workload = ownerWorkload(ws)
		if l.Workload == nil && len(l.Processes) == 0 {
			// No owner known (hidden, or a socket no process holds): it
			// lives in its namespace's workload.
			l.Workload = nsWorkload[l.Netns]
		}
	}
}

// WorkloadOf is the workload of a socket's owners (ownerWorkload), for
// views that find owners themselves (trace).
func WorkloadOf(res *workload.Resolver, ps []snapshot.Process) *snapshot.Workload {
	ws := make([]*snapshot.Workload, len(ps))
	for i, p := range ps {
		ws[i] = res.PID(p.PID)
	}
	return ownerWorkload(ws)
}

// ownerWorkload decides a listener's workload from its owners' (lowest
// pid first): all in one container → that container; in several
// containers of one pod → the pod; in different pods or containers → the
// lowest pid's, the process that most likely called listen(2). Owners in
// no container do not count when another owner is in one.
func ownerWorkload(ws []*snapshot.Workload) *snapshot.Workload {
	var first *snapshot.Workload
	mixed := false
	for _, w := range ws {
		switch {
		case w == nil:
		case first == nil:
			first = w
		case *w == *first:
		case podKey(w) != "" && podKey(w) == podKey(first):
			mixed = true // another container of the same pod
		default:
			return first
		}
	}
	if mixed {
		return podOf(first)
	}
	return first
}

// podKey identifies w's pod, "" for a plain container.
func podKey(w *snapshot.Workload) string {
	if w.PodUID != "" {
		return w.PodUID
	}
	if w.Pod != "" {
		return w.Namespace + "/" + w.Pod
	}
	return ""
}

// podOf is the pod of w without its container; a plain container is
// itself.
func podOf(w *snapshot.Workload) *snapshot.Workload {
	if podKey(w) == "" {
		return w
	}
	p := *w
	p.Container, p.ContainerID = "", ""
	return &p
}

// MatchPod reports whether w is the pod spec names: NAMESPACE/NAME, a
// NAME in any namespace, or a pod UID.
func MatchPod(w *snapshot.Workload, spec string) bool {
	if w == nil || spec == "" {
		return false
	}
	if ns, name, ok := strings.Cut(spec, "/"); ok {
		return w.Namespace == ns && w.Pod == name
	}
	return w.Pod == spec || w.PodUID == spec
}

// MatchContainer reports whether w is the container spec names: its
// name, or its id or a prefix of it of at least 12 characters.
func MatchContainer(w *snapshot.Workload, spec string) bool {
	if w == nil || spec == "" {
		return false
	}
	return w.Container == spec || len(spec) >= 12 && strings.HasPrefix(w.ContainerID, spec)
}

// filterWorkloads keeps listeners of one of pods and one of containers.
func filterWorkloads(ls []snapshot.Listener, pods, containers []string) []snapshot.Listener {
	if len(pods) == 0 && len(containers) == 0 {
		return ls
	}
	return slices.DeleteFunc(ls, func(l snapshot.Listener) bool {
		podOK := len(pods) == 0 || slices.ContainsFunc(pods, func(s string) bool { return MatchPod(l.Workload, s) })
		ctrOK := len(containers) == 0 || slices.ContainsFunc(containers, func(s string) bool { return MatchContainer(l.Workload, s) })
		return !(podOK && ctrOK)
	})
}
