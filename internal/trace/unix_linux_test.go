//go:build amd64

package trace

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backlog-dev/backlog/internal/lab/labtest"
	"github.com/backlog-dev/backlog/internal/netns"
)

// TestUnixRefusals: every UNIX connect refused with EAGAIN is one event,
// with the name asked for and the client's pid; a connect that got in is
// none. Both program types.
func TestUnixRefusals(t *testing.T) {
	for _, progs := range []Programs{ProgramsTpBtf, ProgramsRawTp} {
		t.Run(string(progs), func(t *testing.T) {
			ns := labtest.Namespace(t, "bl-trace-unix")
			id, err := netns.Stat(ns.Path)
			if err != nil {
				t.Fatal(err)
			}
			rec := startTracer(t, Options{Programs: progs, Namespaces: []Namespace{{Path: ns.Path, Name: ns.Name}}, OnlyNamespaces: true})
			var mu sync.Mutex
			var got []UnixRefusal
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- rec.RunUnix(ctx, func(u UnixRefusal) {
					mu.Lock()
					got = append(got, u)
					mu.Unlock()
				})
			}()

			path := labtest.ListenUnix(t, ns, unix.SOCK_STREAM, filepath.Join(t.TempDir(), "app.sock"), 2)
			abstract := labtest.ListenUnix(t, ns, unix.SOCK_SEQPACKET, "@bl-trace-unix", 0)
			refused := labtest.DialUnix(t, ns, path, 8) // 3 get in
			refused2 := labtest.DialUnix(t, ns, abstract, 4)
			// A blocking connect waits out its SO_SNDTIMEO, then is refused too.
			if _, err := ns.ConnectUnixBlocking(unix.SOCK_STREAM, path.Name, 100*time.Millisecond); err == nil {
				t.Fatal("a blocking connect to a full queue got in")
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if refused != 5 || refused2 != 3 {
				t.Fatalf("refused %d and %d, want 5 and 3", refused, refused2)
			}
			count := map[string]int{}
			for _, u := range got {
				count[u.Path]++
				if u.Client.PID != os.Getpid() || u.Netns != id.Inode || u.Namespace != ns.Name || u.Stage != StageUnixRefused {
					t.Errorf("event %+v, want this process (%d) in %s (%d)", u, os.Getpid(), ns.Name, id.Inode)
				}
				if want := map[string]string{path.Name: "stream", abstract.Name: "seqpacket"}[u.Path]; u.Type != want {
					t.Errorf("%s: type %s, want %s", u.Path, u.Type, want)
				}
			}
			if count[path.Name] != refused+1 || count[abstract.Name] != refused2 || len(got) != refused+1+refused2 {
				t.Errorf("events by name %v, want %s: %d (one blocking), %s: %d", count, path.Name, refused+1, abstract.Name, refused2)
			}
		})
	}
}
