package collect

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestOwnerCache: a second collection reuses the walk; a new listener or
// an expired cache walks again.
func TestOwnerCache(t *testing.T) {
	ns := newNS(t)
	listen(t, ns, "127.0.0.1:0", 5)
	cache := &OwnerCache{MaxAge: time.Hour}
	opts := Options{Targets: []Target{{Path: ns.Path, Name: ns.Name}}, Owners: cache}
	owned := func() {
		t.Helper()
		snap, err := Collect(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range snap.Listeners {
			if len(l.Processes) != 1 || l.Processes[0].PID != os.Getpid() {
				t.Errorf("port %d owned by %+v, want this test", l.Port, l.Processes)
			}
		}
	}
	walked := func() time.Time {
		cache.mu.Lock()
		defer cache.mu.Unlock()
		return cache.walked
	}

	owned()
	first := walked()
	owned()
	if walked() != first {
		t.Error("walked again with no new listener")
	}
	listen(t, ns, "127.0.0.1:0", 5)
	owned()
	second := walked()
	if second == first {
		t.Error("a new listener did not cause a walk")
	}
	cache.MaxAge = time.Nanosecond
	owned()
	if walked() == second {
		t.Error("an expired cache did not cause a walk")
	}
}
