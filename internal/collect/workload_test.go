package collect

import (
	"testing"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func TestOwnerWorkload(t *testing.T) {
	web := &snapshot.Workload{Namespace: "shop", Pod: "web-1", PodUID: "u1", Container: "nginx", ContainerID: "a"}
	side := &snapshot.Workload{Namespace: "shop", Pod: "web-1", PodUID: "u1", Container: "envoy", ContainerID: "b"}
	other := &snapshot.Workload{Namespace: "shop", Pod: "db-0", PodUID: "u2", Container: "pg", ContainerID: "c"}
	docker := &snapshot.Workload{Runtime: "docker", Container: "web", ContainerID: "d"}
	pod := &snapshot.Workload{Namespace: "shop", Pod: "web-1", PodUID: "u1"}
	for _, c := range []struct {
		name string
		ws   []*snapshot.Workload
		want *snapshot.Workload
	}{
		{"none", nil, nil},
		{"host processes", []*snapshot.Workload{nil, nil}, nil},
		{"one container", []*snapshot.Workload{web, web}, web},
		{"host process and a container", []*snapshot.Workload{nil, web}, web},
		{"two containers of one pod name the pod", []*snapshot.Workload{web, side}, pod},
		{"two pods: the lowest pid's", []*snapshot.Workload{other, web}, other},
		{"plain containers", []*snapshot.Workload{docker, web}, docker},
	} {
		got := ownerWorkload(c.ws)
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestMatch(t *testing.T) {
	w := &snapshot.Workload{Namespace: "shop", Pod: "web-1", PodUID: "u1", Container: "nginx", ContainerID: "3f4e5a6b7c8d9e0f"}
	for spec, want := range map[string]bool{"shop/web-1": true, "web-1": true, "u1": true, "other/web-1": false, "web": false, "": false} {
		if got := MatchPod(w, spec); got != want {
			t.Errorf("MatchPod(%q) = %v", spec, got)
		}
	}
	for spec, want := range map[string]bool{"nginx": true, "3f4e5a6b7c8d": true, "3f4e5a": false, "web-1": false} {
		if got := MatchContainer(w, spec); got != want {
			t.Errorf("MatchContainer(%q) = %v", spec, got)
		}
	}
	if MatchPod(nil, "x") || MatchContainer(nil, "x") {
		t.Error("nil workload matched")
	}
}
