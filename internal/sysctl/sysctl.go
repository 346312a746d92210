// Package sysctl reads the listen-related sysctls of a network namespace.
// Files under /proc/sys/net resolve to the namespace of the reading thread.
package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Keys lists the sysctls backlog reads, by their dotted name.
var Keys = []string{
	"net.core.somaxconn",
	"net.ipv4.tcp_max_syn_backlog",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_abort_on_overflow",
	"net.ipv4.tcp_synack_retries",
}

// Read reads the sysctls under root (normally "/proc/sys") from the calling
// thread. A sysctl this kernel lacks stays nil; other failures are joined
// into the error while the values that were read are still returned.
func Read(root string) (snapshot.Sysctls, error) {
	var s snapshot.Sysctls
	dst := []**int64{&s.Somaxconn, &s.TCPMaxSynBacklog, &s.TCPSyncookies, &s.TCPAbortOnOverflow, &s.TCPSynackRetries}
	var errs []error
	for i, key := range Keys {
		v, err := ReadInt(root, key)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			*dst[i] = &v
		}
	}
	return s, errors.Join(errs...)
}

// ReadInt reads one integer sysctl by dotted name.
func ReadInt(root, key string) (int64, error) {
	b, err := os.ReadFile(Path(root, key))
	if err != nil {
		return 0, fmt.Errorf("sysctl: %w", err)
	}
	return ParseInt(key, b)
}

// ParseInt parses the contents of a one-integer sysctl file.
func ParseInt(key string, b []byte) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sysctl: %s: %w", key, err)
	}
	return v, nil
}

// Path turns a dotted sysctl name into its file under root.
func Path(root, key string) string {
	return filepath.Join(root, strings.ReplaceAll(key, ".", "/"))
}
