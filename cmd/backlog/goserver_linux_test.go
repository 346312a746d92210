package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// goServerEnv makes this test binary a plain Go server (TestMain): it
// listens with net.Listen on the first address of the comma-separated
// list, on the next one at each SIGHUP, and never accepts. A real Go
// program, built by the go command with the rest of the tests, so it also
// runs in the kernel matrix's guests, which have no Go toolchain.
const goServerEnv = "BACKLOG_TEST_GO_SERVER"

func goServerMain(addrs []string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var held []net.Listener
	for i, a := range addrs {
		if i > 0 {
			<-hup
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		held = append(held, l)
		fmt.Println("listening", a)
	}
	select {}
}

// TestGoServer: a Go program's net.Listen asks for net.core.somaxconn, read
// once per process. Started under somaxconn 128, it keeps asking for 128
// after somaxconn is raised to 1024, even for a Listen it makes later (ss
// shows 128 on both); doctor recognises it as a Go program from its build
// info and says restart it, with what it asked for and how it knows. A
// fresh process gets 1024.
func TestGoServer(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := labtest.Namespace(t, "bl-go")
	inNs(t, ns, "ip", "link", "set", "lo", "up")
	inNs(t, ns, "sysctl", "-qw", "net.core.somaxconn=128")
	start := func(addrs ...string) *os.Process {
		return startDaemonEnv(t, []string{goServerEnv + "=" + strings.Join(addrs, ",")}, "ip", "netns", "exec", ns.Name, self).Process
	}
	old := start("127.0.0.1:18081", "127.0.0.1:18082")
	waitListening(t, ns, 18081, 1)
	inNs(t, ns, "sysctl", "-qw", "net.core.somaxconn=1024")
	// A Listen after the raise, in the same process: still 128.
	if err := old.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitListening(t, ns, 18082, 1)
	start("127.0.0.1:18083") // a new process reads 1024
	waitListening(t, ns, 18083, 1)
	for port, want := range map[int]int{18081: 128, 18082: 128, 18083: 1024} {
		ss := testutil.SSListeners(t, ns.Name, fmt.Sprintf("sport = :%d", port))
		ls := lsPort(t, ns, port)
		if len(ss) != 1 || ss[0].SendQ != want || len(ls) != 1 || int(ls[0].Backlog) != want {
			t.Fatalf("port %d: ss %+v, ls %+v; want backlog %d", port, ss, ls, want)
		}
	}

	fs := doctorNs(t, ns, "1s")
	for _, port := range []int{18081, 18082} {
		f := findingFor(fs, "backlog-capped-at-listen", "127.0.0.1:"+strconv.Itoa(port))
		if f == nil || !strings.HasSuffix(f.Server, " (Go)") || f.RequestedBacklog != 128 ||
			!strings.Contains(f.RequestedFrom, "Go's net.Listen asks for net.core.somaxconn") || !strings.Contains(f.RequestedFrom, "go1.") ||
			!strings.Contains(f.Summary, "restart it to pick up the new somaxconn") || !strings.Contains(f.Advice, "Restart") ||
			!strings.Contains(f.Why, "once per process") {
			t.Errorf("port %d: %+v", port, f)
		}
	}
	if f := findingFor(fs, "backlog-capped-at-listen", "127.0.0.1:18083"); f != nil {
		t.Errorf("the restarted process is told to restart: %+v", f)
	}
	f := findingFor(fs, "backlog-capped-by-somaxconn", "127.0.0.1:18083")
	if f == nil || !strings.HasSuffix(f.Server, " (Go)") || !strings.Contains(f.Advice, "Go reads somaxconn once per process") ||
		!strings.Contains(f.Command, "sysctl -w net.core.somaxconn=") {
		t.Errorf("somaxconn advice for the fresh Go process: %+v", f)
	}
}
