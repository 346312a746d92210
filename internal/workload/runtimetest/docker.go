//go:build linux

package runtimetest

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Docker is a dockerd of the test's own: private data root, exec root
// and socket; no bridge, no iptables rules, nothing of the host changed.
type Docker struct {
	// DataRoot is its --data-root, for --runtime-root docker=.
	DataRoot string
	sock     string
	client   string
}

// StartDocker starts dockerd, imports the payload image, and when the
// test ends removes the containers and stops the daemon by its pid.
func StartDocker(t testing.TB) *Docker {
	t.Helper()
	require(t, "dockerd", "runc")
	client := "/usr/bin/docker" // the daemon's own client, same API version
	if _, err := exec.LookPath(client); err != nil {
		client = "docker"
	}
	// dockerd's containerd starts its shims with their sockets in
	// /run/containerd/s whatever its --exec-root.
	removeEmpty(t, "/run/containerd", "s", "fifo", "runc/default", "runc")
	dir := stateDir(t, "docker")
	d := &Docker{DataRoot: filepath.Join(dir, "root"), sock: filepath.Join(dir, "docker.sock"), client: client}
	cmd := daemon(t, dir, "dockerd", "--data-root", d.DataRoot, "--exec-root", filepath.Join(dir, "exec"),
		"--host", "unix://"+d.sock, "--pidfile", filepath.Join(dir, "docker.pid"),
		"--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
		"--storage-driver", "overlay2")
	waitSocket(t, d.sock, cmd, filepath.Join(dir, "dockerd.log"))
	t.Cleanup(func() { endShims(filepath.Join(dir, "exec")) }) // after the daemon stops: LIFO
	t.Cleanup(func() {
		if ids, err := output(d.client, "-H", "unix://"+d.sock, "ps", "--all", "--quiet"); err == nil && ids != "" {
			output(d.client, append([]string{"-H", "unix://" + d.sock, "rm", "--force"}, splitLines(ids)...)...)
		}
	}) // runs before the daemon's cleanup: LIFO
	d.docker(t, "import", "--change", `ENTRYPOINT ["/payload"]`, RootFS(t), Image)
	return d
}

func (d *Docker) docker(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, d.client, append([]string{"-H", "unix://" + d.sock}, args...)...)
}

// Run starts a named container with its own network namespace whose
// payload listens on 127.0.0.1:port with the backlog and fills its queue.
func (d *Docker) Run(t testing.TB, name string, port, backlog int) (id string, pid int) {
	t.Helper()
	id = d.docker(t, "run", "--detach", "--name", name, "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
		Image, strconv.Itoa(port), strconv.Itoa(backlog))
	pid, _ = strconv.Atoi(d.docker(t, "inspect", "--format", "{{.State.Pid}}", id))
	return id, pid
}
