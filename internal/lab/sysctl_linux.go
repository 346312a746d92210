package lab

import (
	"fmt"
	"os"
	"strings"
)

// SetSysctl writes a network sysctl of this namespace, never the host's.
//
// /proc/sys/net resolves by the calling thread's namespace (net_ctl_header_lookup
// and is_seen in net/sysctl_net.c look at current->nsproxy), so the file is
// opened from a thread inside the namespace.
func (ns *Namespace) SetSysctl(key, value string) error {
	path, err := sysctlPath(key)
	if err != nil {
		return fmt.Errorf("lab: set %w", err)
	}
	err = ns.Do(func() error {
		if err := ns.checkInside(); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value)
		cerr := f.Close()
		if werr != nil {
			return werr
		}
		return cerr
	})
	if err != nil {
		return fmt.Errorf("lab: set sysctl %s=%q in %s: %w", key, value, ns.Name, err)
	}
	return nil
}

// Sysctl reads a network sysctl of this namespace, without the trailing newline.
func (ns *Namespace) Sysctl(key string) (string, error) {
	path, err := sysctlPath(key)
	if err != nil {
		return "", fmt.Errorf("lab: read %w", err)
	}
	var value string
	err = ns.Do(func() error {
		if err := ns.checkInside(); err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		value = strings.TrimRight(string(b), "\n")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("lab: read sysctl %s in %s: %w", key, ns.Name, err)
	}
	return value, nil
}
