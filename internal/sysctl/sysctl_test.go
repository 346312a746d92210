package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, root, key, val string) {
	t.Helper()
	p := Path(root, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRead(t *testing.T) {
	root := t.TempDir()
	write(t, root, "net.core.somaxconn", "4096\n")
	write(t, root, "net.ipv4.tcp_syncookies", "0\n")
	write(t, root, "net.ipv4.tcp_max_syn_backlog", "not a number\n")
	// tcp_abort_on_overflow and tcp_synack_retries absent: an old kernel.
	s, err := Read(root)
	if err == nil {
		t.Error("malformed tcp_max_syn_backlog not reported")
	}
	if s.Somaxconn == nil || *s.Somaxconn != 4096 {
		t.Errorf("somaxconn = %v", s.Somaxconn)
	}
	if s.TCPSyncookies == nil || *s.TCPSyncookies != 0 {
		t.Errorf("tcp_syncookies = %v, want a real 0", s.TCPSyncookies)
	}
	if s.TCPMaxSynBacklog != nil || s.TCPAbortOnOverflow != nil || s.TCPSynackRetries != nil {
		t.Errorf("absent or malformed sysctls made up: %+v", s)
	}
}

func TestReadLive(t *testing.T) {
	s, err := Read("/proc/sys")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Skip(err)
	}
	want, _ := ParseInt("", b)
	if s.Somaxconn == nil || *s.Somaxconn != want {
		t.Errorf("somaxconn = %v, want %d", s.Somaxconn, want)
	}
}

func FuzzParseInt(f *testing.F) {
	f.Add([]byte("4096\n"))
	f.Add([]byte("-1"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseInt("k", b) })
}
