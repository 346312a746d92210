// Package testutil holds the helpers that decide whether a privileged or
// kernel-dependent test can run, and the oracles (ss, nstat) tests compare
// against.
package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root. CI runs as root, so
// nothing skips there.
func RequireRoot(t testing.TB) {
	t.Helper()
	skipHostOnly(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: it builds private network namespaces")
	}
}

// RequireTool skips the test when a command is not installed. In the
// kernel matrix a missing tool fails the test unless it is listed in
// hostOnly: nothing skips there unannounced.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	skipHostOnly(t)
	p, err := exec.LookPath(name)
	if err != nil {
		if InKernelMatrix() {
			t.Fatalf("needs %s, which the kernel matrix's guest lacks: name this test in hostOnly (internal/testutil/kernelmatrix.go) with the reason", name)
		}
		t.Skipf("needs %s (scripts/test.sh installs it)", name)
	}
	return p
}

// InNetns runs a command inside the named namespace (ip netns exec) and
// returns its standard output; it fails the test on error.
func InNetns(t testing.TB, ns string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ip netns exec %s %s: %v: %s", ns, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// Eventually polls cond every 50 ms until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SSListener is one listener as `ss -ltnme` prints it.
type SSListener struct {
	RecvQ, SendQ int
	Local        string
	Drops        int    // skmem d<N>, -1 when absent
	Inode        uint32 // ino:<N>, 0 when absent
}

// SSListeners runs `ss -Hltnme` in the namespace, optionally with a filter
// such as "sport = :8080".
func SSListeners(t testing.TB, ns string, filter ...string) []SSListener {
	t.Helper()
	out := InNetns(t, ns, append([]string{"ss", "-Hltnme"}, filter...)...)
	var ls []SSListener
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == "LISTEN" {
			rq, _ := strconv.Atoi(f[1])
			sq, _ := strconv.Atoi(f[2])
			l := SSListener{RecvQ: rq, SendQ: sq, Local: f[3], Drops: -1}
			for _, w := range f[4:] {
				if v, ok := strings.CutPrefix(w, "ino:"); ok {
					n, _ := strconv.ParseUint(v, 10, 32)
					l.Inode = uint32(n)
				}
			}
			ls = append(ls, l)
			continue
		}
		if i := strings.Index(sc.Text(), "skmem:("); i >= 0 && len(ls) > 0 {
			for _, kv := range strings.Split(strings.Trim(sc.Text()[i+len("skmem:"):], "()\t "), ",") {
				if v, ok := strings.CutPrefix(kv, "d"); ok {
					ls[len(ls)-1].Drops, _ = strconv.Atoi(v)
				}
			}
		}
	}
	return ls
}

// SSCount counts the sockets `ss -Hn state STATE FILTER` prints in ns.
func SSCount(t testing.TB, ns, state string, filter ...string) int {
	t.Helper()
	out := InNetns(t, ns, append([]string{"ss", "-Hnt", "state", state}, filter...)...)
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// Nstat returns the absolute TcpExt counters of ns as `nstat -asz` prints
// them (without touching nstat's history), keyed by kernel name.
func Nstat(t testing.TB, ns string) map[string]uint64 {
	t.Helper()
	out := InNetns(t, ns, "nstat", "-asz")
	m := make(map[string]uint64)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, ok := strings.CutPrefix(f[0], "TcpExt")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err == nil {
			m[name] = v
		}
	}
	return m
}

// SSUnixListener is one UNIX listener as `ss -xl` prints it.
type SSUnixListener struct {
	Netid        string // u_str, u_seq
	RecvQ, SendQ int    // pending connections, backlog
	Name         string // path, @abstract (NULs as @), or * when unnamed
	Inode        uint32
}

// SSUnixListeners runs `ss -Hxl` in the namespace at nsPath (an nsfs file;
// "" for this process's own) and returns its listeners.
func SSUnixListeners(t testing.TB, nsPath string) []SSUnixListener {
	t.Helper()
	args := []string{"ss", "-Hxl"}
	if nsPath != "" {
		args = append([]string{"nsenter", "--net=" + nsPath}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return ParseSSUnix(string(out))
}

// ParseSSUnix parses `ss -Hxl` output: Netid State Recv-Q Send-Q Name Inode
// Peer PeerInode, where the name may hold spaces.
func ParseSSUnix(out string) []SSUnixListener {
	var ls []SSUnixListener
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "LISTEN" {
			continue
		}
		rq, err1 := strconv.Atoi(f[2])
		sq, err2 := strconv.Atoi(f[3])
		ino, err3 := strconv.ParseUint(f[len(f)-3], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		ls = append(ls, SSUnixListener{Netid: f[0], RecvQ: rq, SendQ: sq,
			Name: strings.Join(f[4:len(f)-3], " "), Inode: uint32(ino)})
	}
	return ls
}
