package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames are the capabilities backlog's features need (README).
var capNames = []struct {
	bit  uint
	name string
	why  string
}{
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "enter other network namespaces"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "see other users' sockets' owners"},
	{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "read other users' /proc entries"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "build lab namespaces"},
	{unix.CAP_BPF, "CAP_BPF", "load trace programs"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "attach trace programs"},
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	var u unix.Utsname
	kernel := "unknown"
	if err := unix.Uname(&u); err == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	fmt.Fprintf(stdout, "backlog %s (%s, %s/%s)\nkernel %s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, kernel)
	eff, err := effectiveCaps()
	if err != nil {
		fmt.Fprintf(stdout, "capabilities: unknown (%v)\n", err)
		return nil
	}
	for _, c := range capNames {
		state := "missing"
		if eff&(1<<c.bit) != 0 {
			state = "yes"
		}
		fmt.Fprintf(stdout, "%-20s %-7s to %s\n", c.name, state, c.why)
	}
	_, err = os.Stat("/sys/kernel/btf/vmlinux")
	fmt.Fprintf(stdout, "%-20s %-7s for trace\n", "kernel BTF", map[bool]string{true: "yes", false: "missing"}[err == nil])
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}
