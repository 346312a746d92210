package workload

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// The ids and names in testdata, captured from the real runtimes.
const (
	criContainer = "7985afbbe2e792688e6abc75440bc07d21627f34e43ca1a39327b84aebc1956f"
	criSandbox   = "7ba40d83caa453a45b3cb0dd295890b7037c006dc3439ebee49e935e220440ee"
	criUID       = "0bac1000-0000-4000-8000-000000009802"
	dockerID     = "d2b88f63b2199af90352b96e8bb8137c90ebeb71372b772ae2b119c453cf6ed2"
	podmanID     = "9261bf4727387d5a07bf22752bf56d242954e400f95775ee96d2e896020159ba"
	crioID       = "438e2ba9d5970597608a7df68ae72f6085a1460f976f964ed5f369c793eaa4fe"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// nodeState lays the captured files out as the runtimes do on a node.
func nodeState(t *testing.T) *Roots {
	dir := t.TempDir()
	r := &Roots{
		Containerd: []string{filepath.Join(dir, "run/containerd")},
		Docker:     []string{filepath.Join(dir, "var/lib/docker")},
		Storage:    []string{filepath.Join(dir, "run/containers/storage"), filepath.Join(dir, "var/lib/containers/storage")},
	}
	tasks := filepath.Join(r.Containerd[0], ContainerdTasks)
	put(t, filepath.Join(tasks, "k8s.io", criContainer, "config.json"), fixture(t, "containerd/container.json"))
	put(t, filepath.Join(tasks, "k8s.io", criSandbox, "config.json"), fixture(t, "containerd/sandbox.json"))
	put(t, filepath.Join(tasks, "default", "web", "config.json"), []byte(`{"ociVersion": "1.0.2"}`))
	put(t, filepath.Join(r.Docker[0], "containers", dockerID, "config.v2.json"), fixture(t, "docker/config.v2.json"))
	put(t, filepath.Join(r.Storage[1], "overlay-containers", "containers.json"), fixture(t, "podman/containers.json"))
	put(t, filepath.Join(r.Storage[1], "overlay-containers", podmanID, "userdata", "config.json"), fixture(t, "podman/config.json"))
	put(t, filepath.Join(r.Storage[0], "overlay-containers", crioID, "userdata", "config.json"), fixture(t, "crio/config.json"))
	return r
}

func TestResolver(t *testing.T) {
	res := &Resolver{Roots: nodeState(t), Node: "node-1"}
	for _, c := range []struct {
		name, cgroup string
		want         *snapshot.Workload
	}{
		{"containerd CRI container, kubelet cgroupfs",
			"0::/kubepods/besteffort/pod" + criUID + "/" + criContainer,
			&snapshot.Workload{Namespace: "bl-ns-9802", Pod: "web", PodUID: criUID, Container: "server", ContainerID: criContainer, Runtime: Containerd}},
		{"containerd CRI sandbox: the pod, no container",
			"4:memory:/kubepods/besteffort/pod" + criUID + "/" + criSandbox + "\n0::/",
			&snapshot.Workload{Namespace: "bl-ns-9802", Pod: "web", PodUID: criUID, ContainerID: criSandbox, Runtime: Containerd}},
		{"CRI-O, kubelet systemd",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5b5e07db_f1b9_4530_81ef_b7d04d66b83e.slice/crio-" + crioID + ".scope",
			&snapshot.Workload{Namespace: "kube-system", Pod: "coredns-6d4b75cb6d-4mtdm", PodUID: "5b5e07db-f1b9-4530-81ef-b7d04d66b83e", Container: "coredns", ContainerID: crioID, Runtime: CRIO}},
		{"docker, cgroupfs on a hybrid host",
			"9:name=systemd:/docker/" + dockerID + "\n0::/",
			&snapshot.Workload{Container: "i15dweb", ContainerID: dockerID, Runtime: Docker}},
		{"podman, cgroupfs",
			"0::/libpod_parent/libpod-" + podmanID,
			&snapshot.Workload{Container: "i15web", ContainerID: podmanID, Runtime: Podman}},
		{"ctr run: namespace/id",
			"4:memory:/default/web\n0::/",
			&snapshot.Workload{Container: "web", ContainerID: "web", Runtime: Containerd}},
		{"a pod whose container state is gone: the UID",
			"0::/kubepods/besteffort/pod11111111-2222-4333-8444-555555555555/" + dockerID[:60] + "abcd",
			&snapshot.Workload{PodUID: "11111111-2222-4333-8444-555555555555", ContainerID: dockerID[:60] + "abcd"}},
		{"host process", "0::/user.slice/session-2.scope", nil},
		{"no cgroup", "", nil},
	} {
		got := res.Cgroup(c.cgroup)
		if c.want != nil {
			c.want.Node = "node-1"
		}
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestResolverCache: a container is read once; a new one is read when it
// appears; a path that named nothing is tried again after a minute.
func TestResolverCache(t *testing.T) {
	roots := nodeState(t)
	now := time.Unix(1000, 0)
	res := &Resolver{Roots: roots, now: func() time.Time { return now }}
	cg := "0::/docker/" + dockerID
	if w := res.Cgroup(cg); w == nil || w.Container != "i15dweb" {
		t.Fatalf("docker container: %+v", w)
	}
	os.RemoveAll(filepath.Join(roots.Docker[0], "containers", dockerID))
	if w := res.Cgroup(cg); w == nil || w.Container != "i15dweb" {
		t.Errorf("cached docker container re-read: %+v", w)
	}
	newID := "aa" + dockerID[2:]
	newCg := "0::/docker/" + newID
	if w := res.Cgroup(newCg); w == nil || w.Container != "" {
		t.Fatalf("unknown container: %+v, want its id only", w)
	}
	b := fixture(t, "docker/config.v2.json")
	put(t, filepath.Join(roots.Docker[0], "containers", newID, "config.v2.json"), b)
	now = now.Add(2 * negativeTTL)
	if w := res.Cgroup(newCg); w == nil || w.Container != "i15dweb" {
		t.Errorf("container named later not re-read: %+v", w)
	}
	now = now.Add(2 * positiveTTL)
	if w := res.Cgroup(cg); w == nil || w.Container != "" {
		t.Errorf("removed container still named after %v: %+v", positiveTTL, w)
	}
}

func TestParseOCIConfigErrors(t *testing.T) {
	for _, b := range []string{"", "{", "[]"} {
		if _, _, err := ParseOCIConfig([]byte(b)); err == nil {
			t.Errorf("ParseOCIConfig(%q) accepted", b)
		}
		if _, err := ParseDockerConfig([]byte(b)); err == nil {
			t.Errorf("ParseDockerConfig(%q) accepted", b)
		}
	}
	if _, _, err := ParseOCIConfig([]byte(`{"annotations": 3}`)); err == nil {
		t.Error("ParseOCIConfig accepted annotations that are no object")
	}
	if _, err := ParseDockerConfig([]byte(`{"Name": 3}`)); err == nil {
		t.Error("ParseDockerConfig accepted a name that is no string")
	}
	for _, b := range []string{"", "{}", `[{"id": 3}]`} {
		if _, err := ParseContainersJSON([]byte(b)); err == nil {
			t.Errorf("ParseContainersJSON(%q) accepted", b)
		}
	}
}

func FuzzParseOCIConfig(f *testing.F) {
	for _, name := range []string{"containerd/container.json", "containerd/sandbox.json", "crio/config.json", "podman/config.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, ok, err := ParseOCIConfig(b)
		if err == nil && ok && w.Pod == "" && w.Namespace == "" {
			t.Fatalf("a pod without a name or namespace: %+v", w)
		}
	})
}

func FuzzParseDockerConfig(f *testing.F) {
	b, _ := os.ReadFile("testdata/docker/config.v2.json")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { ParseDockerConfig(b) })
}

func FuzzParseContainersJSON(f *testing.F) {
	b, _ := os.ReadFile("testdata/podman/containers.json")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { ParseContainersJSON(b) })
}
