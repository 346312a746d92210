package lab

import (
	"fmt"
	"strings"
)

// sysctlPath maps a network sysctl key ("net.core.somaxconn", or with
// slashes as sysctl(8) accepts) to its file under /proc/sys. Only net.*
// keys are accepted: the rest of /proc/sys is not per network namespace.
func sysctlPath(key string) (string, error) {
	sep := "."
	if strings.Contains(key, "/") {
		sep = "/"
	}
	parts := strings.Split(key, sep)
	if len(parts) < 2 || parts[0] != "net" {
		return "", fmt.Errorf("sysctl %q: only net.* keys belong to a network namespace", key)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\x00") {
			return "", fmt.Errorf("sysctl %q: invalid key", key)
		}
	}
	return "/proc/sys/" + strings.Join(parts, "/"), nil
}
