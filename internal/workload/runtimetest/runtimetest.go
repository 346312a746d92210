//go:build linux

// Package runtimetest starts real container runtimes for tests — docker,
// podman and containerd's CRI plugin — on private state directories, runs
// a tiny local image in them, and stops and removes everything it
// started when the test ends. No registry is used: the image is a
// static test binary imported from a tarball.
package runtimetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/testutil"
)

// Image is the tag the payload image gets in every runtime.
const Image = "localhost/backlog-test/payload:1"

// Payload builds the static payload binary (testdata/payload) into the
// test's temporary directory: with PORT BACKLOG it listens and fills its
// own accept queue; with no arguments it pauses, as a pod sandbox does.
func Payload(t testing.TB) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), "payload")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "testdata", "payload")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the payload: %v: %s", err, b)
	}
	return out
}

// RootFS is a tarball holding only /payload, for docker and podman import.
func RootFS(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(Payload(t))
	if err != nil {
		t.Fatal(err)
	}
	layer := tarOf(t, map[string][]byte{"payload": b}, 0o755)
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(p, layer, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Archive is the payload as an image archive in docker save's layout
// (manifest.json, config, one layer), which ctr images import reads.
func Archive(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(Payload(t))
	if err != nil {
		t.Fatal(err)
	}
	layer := tarOf(t, map[string][]byte{"payload": b}, 0o755)
	layerSum := sha256.Sum256(layer)
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/payload"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerSum[:])}},
	})
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(layerSum[:]) + "/layer.tar"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{Image}, "Layers": []string{layerName}}})
	archive := tarOf(t, map[string][]byte{"manifest.json": manifest, configName: config, layerName: layer}, 0o644)
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func tarOf(t testing.TB, files map[string][]byte, mode int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		if dir := filepath.Dir(name); dir != "." {
			tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// run runs a command and returns its trimmed stdout, failing the test
// with its stderr.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := output(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func output(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return strings.TrimSpace(o.String()), nil
}

// daemon starts a long-running process, logging to dir/name.log, and
// stops it by its pid when the test ends (SIGTERM, then SIGKILL).
func daemon(t testing.TB, dir, name string, args ...string) *exec.Cmd {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return cmd
}

// waitSocket waits until a unix socket accepts connections or the daemon
// exits, and fails with the daemon's log.
func waitSocket(t testing.TB, sock string, d *exec.Cmd, logPath string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return
		}
		if d.ProcessState != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("%s did not come up on %s:\n%s", d.Path, sock, tail(string(log), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// unmountUnder lazily unmounts whatever is still mounted below dir (a
// daemon killed mid-way leaves overlay and shm mounts), deepest first,
// so that dir can be removed.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// stateDir is a private directory for a runtime's state, removed (after
// unmounting what is left below it) when the test ends.
func stateDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "backlog-"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// require skips without root or the tools.
func require(t testing.TB, tools ...string) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range tools {
		testutil.RequireTool(t, tool)
	}
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// removeIfNew removes path when the test ends if it does not exist now:
// state a tool writes to a fixed place whatever its flags.
func removeIfNew(t testing.TB, path string) {
	if _, err := os.Lstat(path); err == nil {
		return
	}
	t.Cleanup(func() { os.RemoveAll(path) })
}

// removeEmpty removes the directories dir/sub... and dir when the test
// ends, each only when empty: containerd's shims and ctr keep sockets and
// FIFOs under /run/containerd, podman its network configs under
// /run/containers, whatever the daemons' flags. A runtime the host really
// runs keeps files there, so nothing of it is removed; another run's live
// shims keep theirs too.
func removeEmpty(t testing.TB, dir string, subs ...string) {
	t.Cleanup(func() {
		for _, sub := range subs {
			os.Remove(filepath.Join(dir, sub))
		}
		os.Remove(dir)
	})
}
