package render

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func unixSnapshot() *snapshot.Snapshot {
	d := uint64(3)
	return &snapshot.Snapshot{
		Namespaces: []snapshot.Namespace{{Inode: 1, Name: "host"}},
		Listeners: []snapshot.Listener{
			{Netns: 1, Family: snapshot.FamilyUnix, Path: "/run/php/php8.2-fpm.sock", Type: snapshot.TypeStream, Inode: 9,
				AcceptQueue: 5, Backlog: 4, Processes: []snapshot.Process{{PID: 900, Comm: "php-fpm8.2"}}},
			{Netns: 1, Family: snapshot.FamilyInet, Address: netip.MustParseAddr("127.0.0.1"), Port: 8080, Inode: 8,
				AcceptQueue: 1, Backlog: 5, Drops: &d, Processes: []snapshot.Process{}},
		},
	}
}

// TestTableUnix: a UNIX listener prints its path, and "-" where it has no
// SYN queue and no drops.
func TestTableUnix(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, unixSnapshot()); err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, "php8.2-fpm.sock") {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) != 6 || f[0] != "/run/php/php8.2-fpm.sock" || f[1] != "5/4" || f[2] != "125%" || f[3] != "-" || f[4] != "-" || f[5] != "php-fpm8.2(900)" {
		t.Errorf("row %q in:\n%s", row, b.String())
	}
	if !strings.Contains(b.String(), "127.0.0.1:8080") {
		t.Errorf("TCP listener missing:\n%s", b.String())
	}
}

// TestLiveUnix: the live view shows a UNIX listener by the end of its path
// when the column is narrow, and the filter finds it by path.
func TestLiveUnix(t *testing.T) {
	m := NewLive(time.Second)
	m.Update(tea.WindowSizeMsg{Width: 90, Height: 20})
	snap := unixSnapshot()
	snap.Listeners[0].Path = "/run/some/long/directory/php8.2-fpm.sock"
	m.Update(FrameMsg{Delta: snapshot.Diff(nil, snap, nil)})
	v := m.View()
	if !strings.Contains(v, "…ctory/php8.2-fpm.sock") || !strings.Contains(v, "php-fpm8.2(900)") {
		t.Errorf("view:\n%s", v)
	}
	if !strings.Contains(m.rowText(m.rows[0]), "/run/some/long/directory/php8.2-fpm.sock") &&
		!strings.Contains(m.rowText(m.rows[1]), "/run/some/long/directory/php8.2-fpm.sock") {
		t.Error("the filter text lacks the path")
	}
}
