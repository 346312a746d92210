package netns

import "testing"

func TestContainer(t *testing.T) {
	id := "3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f"
	for _, c := range []struct{ cgroup, want string }{
		{"0::/system.slice/docker-" + id + ".scope\n", "docker:3f4e5a6b7c8d"},
		{"12:memory:/docker/" + id + "\n0::/docker/" + id, "docker:3f4e5a6b7c8d"},
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-" + id + ".scope", "pod:1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"},
		{"0::/kubepods/besteffort/pod1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d/" + id, "pod:1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"},
		{"0::/system.slice/crio-" + id + ".scope", "crio:3f4e5a6b7c8d"},
		{"0::/machine.slice/libpod-" + id + ".scope", "podman:3f4e5a6b7c8d"},
		{"0::/user.slice/user-1000.slice/session-2.scope", ""},
		{"4:memory:/process_api/ee752a51cc766524aec4380e0a2f842b\n0::/", ""},
		{"garbage", ""},
		{"", ""},
	} {
		if got := Container(c.cgroup); got != c.want {
			t.Errorf("Container(%q) = %q, want %q", c.cgroup, got, c.want)
		}
	}
}

func TestName(t *testing.T) {
	f := Found{ID: ID{Inode: 42}, PID: 77}
	for _, c := range []struct {
		f      Found
		isInit bool
		cgroup string
		comm   string
		want   string
	}{
		{f, true, "", "", "host"},
		{Found{Mount: "blue", PID: 77}, false, "0::/docker/" + "3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f", "", "blue"},
		{f, false, "0::/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f", "nginx", "docker:3f4e5a6b7c8d"},
		{f, false, "0::/", "nginx", "pid:77 (nginx)"},
		{f, false, "", "", "pid:77"},
		{Found{ID: ID{Inode: 42}}, false, "", "", "inode:42"},
	} {
		if got := Name(c.f, c.isInit, c.cgroup, c.comm); got != c.want {
			t.Errorf("Name(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
}

func FuzzContainer(f *testing.F) {
	f.Add("0::/system.slice/docker-3f4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f.scope")
	f.Fuzz(func(t *testing.T, s string) { _ = Container(s) })
}
