//go:build linux

package runtimetest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Containerd is a containerd of the test's own with its CRI plugin:
// private root, state and socket, the payload image as sandbox image, CNI
// from Debian's containernetworking-plugins. The CRI plugin wants an eth0
// with an address in a pod's namespace: the network is host-device with one
// end of a veth pair the test makes (moved into the pod, and deleted at the
// end) and a static address, so no bridge, route or rule touches the host.
// One pod with its own namespace at a time.
type Containerd struct {
	// State is its state directory, for --runtime-root containerd=.
	State  string
	sock   string
	client cri.RuntimeServiceClient
	conn   *grpc.ClientConn
}

// cniBin is where Debian's containernetworking-plugins installs them.
const cniBin = "/usr/lib/cni"

// StartContainerd starts containerd, imports the payload image into its
// k8s.io namespace, and when the test ends removes every pod sandbox it
// made and stops the daemon by its pid.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	require(t, "containerd", "ctr", "runc")
	if _, err := os.Stat(filepath.Join(cniBin, "loopback")); err != nil {
		t.Skipf("needs %s/loopback (containernetworking-plugins)", cniBin)
	}
	// The shims of containerd 1.6 keep their sockets in /run/containerd/s
	// whatever its --state: remove what this test made, once its shims
	// are gone.
	removeEmpty(t, "/run/containerd", "s", "fifo", "runc/default", "runc")
	dir := stateDir(t, "containerd")
	c := &Containerd{State: filepath.Join(dir, "state"), sock: filepath.Join(dir, "containerd.sock")}
	t.Cleanup(func() { endShims(c.sock) }) // after the daemon stops: LIFO
	cniConf := filepath.Join(dir, "cni")
	os.MkdirAll(cniConf, 0o755)
	dummy := fmt.Sprintf("blpod%d", os.Getpid()%10000000)
	run(t, "ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy+"h")
	t.Cleanup(func() { output("ip", "link", "del", dummy+"h") }) // takes its peer along
	os.WriteFile(filepath.Join(cniConf, "10-backlog-test.conflist"), []byte(`{"cniVersion": "0.4.0", "name": "backlog-test", "plugins": [
  {"type": "host-device", "device": "`+dummy+`", "ipam": {"type": "static", "addresses": [{"address": "10.254.254.2/24"}]}}]}`), 0o644)
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Kubelet asks -998 for a sandbox; where lowering oom_score_adj is
  # refused (this CI's VMs), keep the daemon's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(dir, "root"), c.State, c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt"), Image, filepath.Join(dir, "runc"), cniBin, cniConf)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(config), 0o644)
	cmd := daemon(t, dir, "containerd", "--config", cfg)
	waitSocket(t, c.sock, cmd, filepath.Join(dir, "containerd.log"))
	run(t, "ctr", "--address", c.sock, "--namespace", "k8s.io", "images", "import", "--no-unpack=false", Archive(t))

	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c.conn, c.client = conn, cri.NewRuntimeServiceClient(conn)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Every sandbox of this private containerd is the test's.
		if r, err := c.client.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{}); err == nil {
			for _, p := range r.Items {
				c.client.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.Id})
				c.client.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id})
			}
		}
		conn.Close()
	}) // runs before the daemon's cleanup: LIFO
	return c
}

// RunPlain runs the payload as a plain containerd container, as `ctr run`
// makes one (no CRI, namespace "default", the id as its name), with the
// host's network: it listens on 127.0.0.1:port with the backlog. The task
// and container are removed when the test ends.
func (c *Containerd) RunPlain(t testing.TB, id string, port, backlog int) {
	t.Helper()
	ctr := func(args ...string) (string, error) {
		return output("ctr", append([]string{"--address", c.sock, "--namespace", "default"}, args...)...)
	}
	if _, err := ctr("images", "import", Archive(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctr("tasks", "kill", "--signal", "SIGKILL", id)
		for range 50 {
			if _, err := ctr("tasks", "delete", id); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		ctr("containers", "delete", id)
	})
	if _, err := ctr("run", "--detach", "--net-host", Image, id, "/payload", strconv.Itoa(port), strconv.Itoa(backlog)); err != nil {
		t.Fatal(err)
	}
}

// Pod is a pod sandbox with one container.
type Pod struct {
	Namespace, Name, UID, Container string
	SandboxID, ContainerID          string
}

// RunPod does what kubelet does for a pod of one container: RunPodSandbox
// with its name, namespace and UID under kubelet's cgroupfs parent
// (ROOT/kubepods/besteffort/pod<UID>), then CreateContainer and
// StartContainer; the payload listens on 127.0.0.1:port with the backlog.
// hostNetwork puts the pod in the host's network namespace.
func (c *Containerd) RunPod(t testing.TB, namespace, name, uid, container string, hostNetwork bool, port, backlog int) Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mode := cri.NamespaceMode_POD
	if hostNetwork {
		mode = cri.NamespaceMode_NODE
	}
	// kubelet's layout under a cgroup root of the test's own (kubelet
	// --cgroup-root), so that every directory it makes is its to remove.
	cgroupParent := fmt.Sprintf("/backlog-test-%d/kubepods/besteffort/pod%s", os.Getpid(), uid)
	t.Cleanup(removeCgroup(cgroupParent)) // after the sandbox is removed: LIFO
	logDir := t.TempDir()
	sandbox := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: logDir,
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid},
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{Network: mode, Pid: cri.NamespaceMode_CONTAINER, Ipc: cri.NamespaceMode_POD},
			},
		},
	}
	if !hostNetwork {
		sandbox.Hostname = name // kubelet leaves the node's to a hostNetwork pod
	}
	sr, err := c.client.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sandbox})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v", namespace, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.client.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: sr.PodSandboxId})
		c.client.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: sr.PodSandboxId})
	})
	p := Pod{Namespace: namespace, Name: name, UID: uid, Container: container, SandboxID: sr.PodSandboxId}
	cr, err := c.client.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: sr.PodSandboxId,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: container},
			Image:    &cri.ImageSpec{Image: Image},
			Args:     []string{strconv.Itoa(port), strconv.Itoa(backlog)},
			LogPath:  container + ".log",
			Labels:   map[string]string{"io.kubernetes.container.name": container, "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid},
			Linux:    &cri.LinuxContainerConfig{},
		},
		SandboxConfig: sandbox,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s in %s/%s: %v", container, namespace, name, err)
	}
	p.ContainerID = cr.ContainerId
	if _, err := c.client.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", container, err)
	}
	return p
}

// removeCgroup returns a cleanup that removes the cgroup runc makes for
// a pod under kubelet's parent in every hierarchy, and the parents that
// did not exist before.
func removeCgroup(path string) func() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var remove []string // parents the test makes, deepest first
	for _, root := range roots {
		for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				break
			}
			remove = append(remove, filepath.Join(root, p))
		}
	}
	return func() {
		// The sandbox's processes leave their cgroups a moment after it
		// is removed: retry for a while.
		for range 50 {
			killIn(path)
			left := 0
			for _, root := range roots {
				// Containers' cgroups below the pod's, deepest first.
				var below []string
				filepath.WalkDir(filepath.Join(root, path), func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.IsDir() {
						below = append(below, p)
					}
					return nil
				})
				for i := len(below) - 1; i >= 0; i-- {
					if os.Remove(below[i]) != nil {
						left++
					}
				}
			}
			if left == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, dir := range remove {
			os.Remove(dir) // when empty: another test's pod may be there
		}
	}
}

// killIn kills, by pid, the processes still in a cgroup path of the test's
// pods (a sandbox that failed half-way can leave its pause process).
func killIn(path string) {
	pids, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), path+"/") && !strings.Contains(string(b), path+"\n") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// endShims waits for the shims of the containerd listening on sock to
// exit, killing by pid those still there after 5 s.
func endShims(sock string) {
	deadline := time.Now().Add(5 * time.Second)
	for round := 0; round < 200; round++ { // 20 s at most
		var left []int
		cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range cmdlines {
			b, err := os.ReadFile(p)
			if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), sock) {
				continue
			}
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			deadline = time.Now().Add(5 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
