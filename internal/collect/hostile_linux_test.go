package collect

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestUnreadableProc: when the namespace's /proc files cannot be read the
// listeners still come from sock_diag, the counters and sysctls are absent
// (not zero), and the namespace says it was partly read.
func TestUnreadableProc(t *testing.T) {
	ns := newNS(t)
	l := listen(t, ns, "127.0.0.1:0", 5)
	root := t.TempDir() // a procfs with nothing in it
	if err := os.MkdirAll(root+"/self/task", 0o755); err != nil {
		t.Fatal(err)
	}
	snap, err := Collect(context.Background(), Options{ProcRoot: root, Targets: []Target{{Path: ns.Path, Name: ns.Name}}})
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Namespaces[0]
	if !PartlyRead(got) || !strings.Contains(got.Error, "TcpExt") {
		t.Errorf("error %q, want it partly read for lack of TcpExt counters", got.Error)
	}
	if got.Counters.ListenOverflows != nil || got.Sysctls.Somaxconn != nil {
		t.Errorf("made-up numbers: %+v %+v", got.Counters, got.Sysctls)
	}
	if len(snap.Listeners) != 1 || snap.Listeners[0].Port != l.Port || snap.Listeners[0].Backlog != 5 {
		t.Errorf("listeners %+v", snap.Listeners)
	}
}
