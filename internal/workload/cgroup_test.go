package workload

import "testing"

const id = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f"

func TestParseCgroup(t *testing.T) {
	uid := "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
	for _, c := range []struct {
		cgroup string
		want   Ref
		ok     bool
	}{
		{"0::/system.slice/docker-" + id + ".scope\n", Ref{Path: "/system.slice/docker-" + id + ".scope", ContainerID: id, Runtime: Docker}, true},
		// Hybrid host, cgroupfs driver: v1 lines name it, 0:: is the root.
		{"9:name=systemd:/docker/" + id + "\n4:memory:/docker/" + id + "\n0::/", Ref{Path: "/docker/" + id, ContainerID: id, Runtime: Docker}, true},
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-" + id + ".scope",
			Ref{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-" + id + ".scope", PodUID: uid, ContainerID: id, Runtime: Containerd}, true},
		{"0::/kubepods/besteffort/pod" + uid + "/" + id, Ref{Path: "/kubepods/besteffort/pod" + uid + "/" + id, PodUID: uid, ContainerID: id}, true},
		{"0::/kubepods/besteffort/pod" + uid, Ref{Path: "/kubepods/besteffort/pod" + uid, PodUID: uid}, true},
		{"0::/kubepods.slice/kubepods-pod" + "1B2C3D4E_5F60_4A7B_8C9D_0E1F2A3B4C5D.slice/crio-" + id + ".scope",
			Ref{Path: "/kubepods.slice/kubepods-pod1B2C3D4E_5F60_4A7B_8C9D_0E1F2A3B4C5D.slice/crio-" + id + ".scope", PodUID: uid, ContainerID: id, Runtime: CRIO}, true},
		{"0::/machine.slice/libpod-" + id + ".scope/container", Ref{Path: "/machine.slice/libpod-" + id + ".scope/container", ContainerID: id, Runtime: Podman}, true},
		{"4:memory:/libpod_parent/libpod-" + id + "\n0::/", Ref{Path: "/libpod_parent/libpod-" + id, ContainerID: id, Runtime: Podman}, true},
		{"0::/user.slice/user-1000.slice/session-2.scope", Ref{Path: "/user.slice/user-1000.slice/session-2.scope"}, false},
		{"4:memory:/default/web\n0::/", Ref{Path: "/default/web"}, false},
		{"garbage", Ref{}, false},
		{"", Ref{}, false},
	} {
		got, ok := ParseCgroup(c.cgroup)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseCgroup(%q) = %+v, %v; want %+v, %v", c.cgroup, got, ok, c.want, c.ok)
		}
	}
}

func TestContainerdRef(t *testing.T) {
	for _, c := range []struct {
		path, ns, id string
		ok           bool
	}{
		{"/default/web", "default", "web", true},
		{"/k8s.io/" + id, "k8s.io", id, true},
		{"/a/b/c", "", "", false},
		{"/../etc", "", "", false},
		{"/", "", "", false},
	} {
		ns, id, ok := containerdRef(c.path)
		if ns != c.ns || id != c.id || ok != c.ok {
			t.Errorf("containerdRef(%q) = %q, %q, %v", c.path, ns, id, ok)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add("0::/kubepods/besteffort/pod1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d/" + id)
	f.Add("4:memory:/default/web\n0::/")
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := ParseCgroup(s)
		if ok && r.PodUID == "" && r.ContainerID == "" {
			t.Fatalf("ok without a pod or container: %+v", r)
		}
		containerdRef(r.Path)
	})
}
