//go:build linux

package runtimetest

import (
	"path/filepath"
	"strconv"
	"testing"
)

// Podman is podman on private storage: root, run root and tmp dir of its
// own, cgroupfs, runc (Debian's crun refuses hybrid cgroup hierarchies),
// no network backend (containers run with --network none).
type Podman struct {
	// Root is the containers/storage root, for --runtime-root containers=.
	Root string
	args []string
}

// StartPodman imports the payload image into private podman storage and
// removes the containers, the image and the storage when the test ends.
func StartPodman(t testing.TB) *Podman {
	t.Helper()
	require(t, "podman", "runc")
	dir := stateDir(t, "podman")
	p := &Podman{Root: filepath.Join(dir, "root")}
	// podman keeps a blob cache in /var/lib/containers/cache whatever its
	// --root: remove what this test made.
	removeIfNew(t, "/var/lib/containers")
	removeEmpty(t, "/run/containers", "networks") // made before --network-config-dir is read
	p.args = []string{"--root", p.Root, "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--network-config-dir", filepath.Join(dir, "networks"),
		"--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "file", "--storage-driver", "overlay"}
	t.Cleanup(func() {
		// Every container and image of this private storage is the test's.
		output("podman", append(p.args, "rm", "--all", "--force", "--time", "0")...)
		output("podman", append(p.args, "rmi", "--all", "--force")...)
	})
	p.podman(t, "import", "--change", `ENTRYPOINT ["/payload"]`, RootFS(t), Image)
	return p
}

func (p *Podman) podman(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "podman", append(p.args, args...)...)
}

// Run starts a named container with its own network namespace whose
// payload listens on 127.0.0.1:port with the backlog and fills its queue.
// It returns the container id and the payload's pid.
func (p *Podman) Run(t testing.TB, name string, port, backlog int) (id string, pid int) {
	t.Helper()
	id = p.podman(t, "run", "--detach", "--name", name, "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
		Image, strconv.Itoa(port), strconv.Itoa(backlog))
	pid, _ = strconv.Atoi(p.podman(t, "inspect", "--format", "{{.State.Pid}}", id))
	return id, pid
}
