package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/backlog-dev/backlog/internal/caps"
	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/lab"

	"golang.org/x/sys/unix"
)

// capNames are the capabilities backlog's features need (README).
var capNames = []struct {
	bit  uint
	name string
	why  string
}{
	{caps.SysAdmin, "CAP_SYS_ADMIN", "enter other network namespaces"},
	{caps.SysPtrace, "CAP_SYS_PTRACE", "see other users' sockets' owners"},
	{caps.DacReadSearch, "CAP_DAC_READ_SEARCH", "read other users' /proc entries"},
	{caps.NetAdmin, "CAP_NET_ADMIN", "build lab namespaces"},
	{caps.BPF, "CAP_BPF", "load trace programs"},
	{caps.Perfmon, "CAP_PERFMON", "attach trace programs"},
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	kernel := kernelRelease()
	fmt.Fprintf(stdout, "backlog %s (%s, %s/%s)\nkernel %s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, kernel)
	eff, err := caps.Effective()
	if err != nil {
		fmt.Fprintf(stdout, "capabilities: unknown (%v)\n", err)
		return nil
	}
	for _, c := range capNames {
		state := "missing"
		if eff.Has(c.bit) {
			state = "yes"
		}
		fmt.Fprintf(stdout, "%-20s %-7s to %s\n", c.name, state, c.why)
	}
	_, err = os.Stat("/sys/kernel/btf/vmlinux")
	fmt.Fprintf(stdout, "%-20s %-7s for trace\n", "kernel BTF", map[bool]string{true: "yes", false: "missing"}[err == nil])
	source, why := collect.Source()
	if why != "" {
		source += " (" + why + ")"
	}
	fmt.Fprintf(stdout, "listeners read with  %s\n", source)
	// The SYN-queue limit differs between kernels of one version
	// (lab.SynQueueFullAtBacklog): probing it takes a private namespace.
	limit := "unknown (probing it needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	if eff.Has(caps.SysAdmin) && eff.Has(caps.NetAdmin) {
		atBacklog, err := lab.SynQueueFullAtBacklog()
		switch {
		case err != nil:
			limit = fmt.Sprintf("unknown (%v)", err)
		case atBacklog:
			limit = "backlog (a kernel without upstream 3479c7549fb1)"
		default:
			limit = "backlog+1"
		}
	}
	fmt.Fprintf(stdout, "%-20s %s\n", "SYN queue holds", limit)
	return nil
}

// kernelRelease is uname -r, or "unknown".
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
