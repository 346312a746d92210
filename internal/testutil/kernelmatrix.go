package testutil

import (
	"os"
	"strings"
	"testing"
)

// MatrixEnv is set (to the kernel release) inside the guests of the kernel
// matrix, scripts/kernels.sh: Debian's 5.10, 6.1 and 6.12 kernels booted
// under qemu with a minimal initramfs (busybox, iproute2, util-linux, the
// test binaries; no Go toolchain, no other Debian packages).
const MatrixEnv = "BACKLOG_KERNEL_MATRIX"

// InKernelMatrix reports whether the test runs in a kernel-matrix guest.
func InKernelMatrix() bool { return os.Getenv(MatrixEnv) != "" }

// hostOnly names every test that cannot run in a kernel-matrix guest, and
// why; RequireRoot and RequireTool skip them there with that reason. This
// is the one place to list them: in the guest, a test that needs a tool the
// guest lacks fails unless it is named here.
var hostOnly = map[string]string{
	// Tools the guest does not carry.
	"TestTopInTmux":                 "needs tmux (a terminal for the live view)",
	"TestTopResizeAndCtrlC":         "needs tmux (a terminal for the live view)",
	"TestServeScrapeIsClean":        "needs promtool (Debian package prometheus)",
	"TestServeBPF":                  "needs promtool (Debian package prometheus)",
	"TestPrometheusEndToEnd":        "needs the prometheus server",
	"TestDoctorPythonServer":        "needs python3 (a server no one here wrote)",
	"TestPHPFPMBehindNginx":         "needs php-fpm and nginx",
	"TestServeSystemdSocket":        "needs systemd-socket-activate",
	"TestAlertRules":                "needs promtool (Debian package prometheus)",
	"TestReportInChromium":          "needs chromium",
	"TestReportOpenMetricsBackfill": "needs promtool and the prometheus server",
	"TestWorkloadDocker":            "needs dockerd and runc",
	"TestWorkloadPodman":            "needs podman",
	"TestWorkloadPods":              "needs containerd and the CNI plugins",
	"TestGenerateReproducible": "needs clang, llvm-strip and libbpf headers; the eBPF object " +
		"does not depend on the kernel it runs on",
	"TestBuildWithoutClang":      "needs the go command (the guest has only compiled tests)",
	"TestTopScrollsThousands":    "needs tmux (a terminal for the live view)",
	"TestNoArguments":            "needs tmux (a terminal for the live view)",
	"TestWorkloadViews":          "needs podman",
	"TestReplayOverflow/tmux":    "needs tmux (top --replay's live view)",
	"TestWorkloadTrace":          "needs python3 in a container runtime",
	"TestHiddenProcesses":        "needs python3",
	"TestPythonDualStack":        "needs python3",
	"TestOwnerAfterFork":         "needs python3",
	"TestRecordSystemdUnit":      "needs systemd-analyze",
	"TestNginxReuseport":         "needs nginx",
	"TestNginxDeferred":          "needs nginx",
	"TestRedisServer":            "needs redis-server",
	"TestMemcachedAtMaxconns":    "needs memcached",
	"TestHAProxyAtMaxconn":       "needs haproxy",
	"TestTopSaysWhatItCannotSee": "needs tmux (a terminal for the live view)",
	"TestTopNarrowKeepsNetns":    "needs tmux (a terminal for the live view)",
	// Load tests: their bounds are for a real CPU, not for software
	// emulation (10x slower or more); they test backlog, not the kernel.
	"TestLoad": "load test (50 concurrent scrapers): scrapes time out under software emulation",
}

// HostOnly skips the test in the kernel matrix when hostOnly names it;
// RequireRoot and RequireTool call it, tests that call neither call it
// themselves.
func HostOnly(t testing.TB) {
	t.Helper()
	skipHostOnly(t)
}

// skipHostOnly skips a test named in hostOnly when it runs in the matrix.
func skipHostOnly(t testing.TB) {
	t.Helper()
	if !InKernelMatrix() {
		return
	}
	// A subtest is named by its full name, a whole test by its own.
	name, _, _ := strings.Cut(t.Name(), "/")
	why, ok := hostOnly[t.Name()]
	if !ok {
		why, ok = hostOnly[name]
	}
	if ok {
		t.Skipf("not in the kernel matrix (%s): %s", os.Getenv(MatrixEnv), why)
	}
}
