package collect

import (
	"context"
	"net/netip"
	"testing"

	"github.com/backlog-dev/backlog/internal/lab"
	"github.com/backlog-dev/backlog/internal/testutil"
)

// BenchmarkCollect1000 times one snapshot of a namespace holding 1,000
// listeners: both dumps, counters, sysctls and the owner walk.
func BenchmarkCollect1000(b *testing.B) {
	testutil.RequireRoot(b)
	ns, err := lab.NewNamespace("bl-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	for range 1000 {
		l, err := ns.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 128)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
	}
	opts := Options{Targets: []Target{{Path: ns.Path, Name: ns.Name}}}
	for b.Loop() {
		snap, err := Collect(context.Background(), opts)
		if err != nil || len(snap.Listeners) != 1000 {
			b.Fatalf("%v, %d listeners", err, len(snap.Listeners))
		}
	}
}
