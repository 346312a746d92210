package collect

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain doubles as a helper process: with BACKLOG_TEST_CHILD=listen it
// listens on 0.0.0.0:0 with backlog 3, prints the port and waits for stdin
// to close. Started under `unshare --net`, its namespace is held by nothing
// but the process.
func TestMain(m *testing.M) {
	if os.Getenv("BACKLOG_TEST_CHILD") == "listen" {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrInet4{})
		}
		if err == nil {
			err = unix.Listen(fd, 3)
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		sa, _ := unix.Getsockname(fd)
		fmt.Println(sa.(*unix.SockaddrInet4).Port)
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// processNamespace starts a helper process in a namespace of its own and
// returns its pid and listening port; it is ended by pid at cleanup.
func processNamespace(t *testing.T) (pid int, port uint16) {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--", "/proc/self/exe")
	cmd.Path = "/usr/bin/unshare"
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = []string{"unshare", "--net", "--", self}
	cmd.Env = append(os.Environ(), "BACKLOG_TEST_CHILD=listen")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // by pid: only the process this test started
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	p, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper process said %q", line)
	}
	return cmd.Process.Pid, uint16(p)
}
