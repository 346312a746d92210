package lab

import "testing"

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.core.somaxconn":               "/proc/sys/net/core/somaxconn",
		"net/ipv4/conf/eth0.100/rp_filter": "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"kernel.pid_max":                   "",
		"net":                              "",
		"net..core":                        "",
		"net/../kernel/pid_max":            "",
		"vm.swappiness":                    "",
	} {
		got, err := sysctlPath(key)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
}
