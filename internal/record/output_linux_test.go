package record

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/testutil"
)

// safeDir returns a fresh directory only its owner can write.
func safeDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.Chmod(d, 0o750); err != nil {
		t.Fatal(err)
	}
	return d
}

func refused(t *testing.T, err error, want string) {
	t.Helper()
	var ue *UnsafeError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want a refusal", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Fatalf("refusal %q, want one line saying %q", msg, want)
	}
}

// TestOutputRefusesAttacks: the attacks a local user can mount on a
// recorder running as root, each refused with one line.
func TestOutputRefusesAttacks(t *testing.T) {
	testutil.RequireRoot(t) // chown to another user
	t.Run("world-writable directory", func(t *testing.T) {
		d := t.TempDir()
		os.Chmod(d, 0o777|os.ModeSticky)
		_, err := OpenOutput(filepath.Join(d, "rec.blr"), OutputOptions{})
		refused(t, err, "writable by group or others (mode 1777)")
		_, err = OpenOutput(d, OutputOptions{})
		refused(t, err, "writable by group or others")
	})
	t.Run("directory of another user", func(t *testing.T) {
		d := safeDir(t)
		os.Chown(d, 65534, 65534)
		_, err := OpenOutput(filepath.Join(d, "rec.blr"), OutputOptions{})
		refused(t, err, "owned by uid 65534")
	})
	t.Run("symlink to a file root owns", func(t *testing.T) {
		d := safeDir(t)
		victim := filepath.Join(safeDir(t), "shadow")
		os.WriteFile(victim, []byte("secret\n"), 0o600)
		os.Symlink(victim, filepath.Join(d, "rec.blr"))
		_, err := OpenOutput(filepath.Join(d, "rec.blr"), OutputOptions{})
		refused(t, err, "symbolic link")
		if b, _ := os.ReadFile(victim); string(b) != "secret\n" {
			t.Fatalf("the victim changed: %q", b)
		}
	})
	t.Run("dangling symlink", func(t *testing.T) {
		d := safeDir(t)
		target := filepath.Join(safeDir(t), "created-by-root")
		os.Symlink(target, filepath.Join(d, "rec.blr"))
		_, err := OpenOutput(filepath.Join(d, "rec.blr"), OutputOptions{})
		refused(t, err, "symbolic link")
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("the symlink's target was created")
		}
	})
	t.Run("hard link", func(t *testing.T) {
		d := safeDir(t)
		victim := filepath.Join(d, "victim")
		os.WriteFile(victim, []byte("secret\n"), 0o600)
		os.Link(victim, filepath.Join(d, "rec.blr"))
		_, err := OpenOutput(filepath.Join(d, "rec.blr"), OutputOptions{})
		refused(t, err, "2 hard links")
	})
	t.Run("file of another user", func(t *testing.T) {
		d := safeDir(t)
		p := filepath.Join(d, "rec.blr")
		os.WriteFile(p, nil, 0o600)
		os.Chown(p, 65534, 65534)
		_, err := OpenOutput(p, OutputOptions{})
		refused(t, err, "owned by uid 65534")
	})
	t.Run("fifo", func(t *testing.T) {
		d := safeDir(t)
		p := filepath.Join(d, "rec.blr")
		testutil.RequireTool(t, "mkfifo")
		if err := mkfifo(p); err != nil {
			t.Skip(err)
		}
		_, err := OpenOutput(p, OutputOptions{})
		if err == nil {
			t.Fatal("recorded into a fifo")
		}
	})
}

// TestOutputAppendCutsTornTail: appending to a file a crash tore first cuts
// the tear, so the new records are readable after the old ones.
func TestOutputAppendCutsTornTail(t *testing.T) {
	d := safeDir(t)
	p := filepath.Join(d, "rec.blr")
	fs := frames()
	b := encode(t, fs[:6], 1000)
	os.WriteFile(p, b[:len(b)-5], 0o640)
	o, err := OpenOutput(p, OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(o, Header{Program: "backlog test", BPF: true}, 0)
	for _, f := range fs[6:] {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	var got []*Frame
	dmg, err := Read(p, Window{}, func(f *Frame) error { got = append(got, f); return nil })
	if err != nil || len(dmg) != 0 {
		t.Fatalf("err %v damage %v", err, dmg)
	}
	if len(got) != 11 { // frames 0-4 whole, 5 torn and cut, 6-11 appended
		t.Fatalf("%d frames, want 11", len(got))
	}
}

// TestOutputRotates: directory mode starts a new file by size and by age,
// keeps the newest Keep files, and Read joins them in order.
func TestOutputRotates(t *testing.T) {
	d := safeDir(t)
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	o, err := OpenOutput(d, OutputOptions{MaxAge: 5 * time.Second, Keep: 2, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(o, Header{Program: "backlog test", BPF: true}, 0)
	fs := frames()
	for _, f := range fs {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	w.Close()
	files, err := Files(d)
	if err != nil {
		t.Fatal(err)
	}
	// 12 frames, 5 a file: 3 files written, the oldest pruned.
	if len(files) != 2 || filepath.Base(files[0]) != "backlog-20261201T030005Z.blr" {
		t.Fatalf("files %v", files)
	}
	var got []*Frame
	if _, err := Read(d, Window{}, func(f *Frame) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || !got[0].Snapshot.TakenAt.Equal(fs[5].Snapshot.TakenAt) {
		t.Fatalf("%d frames from %v", len(got), got[0].Snapshot.TakenAt)
	}
	st, _ := os.Stat(files[0])
	if st.Mode().Perm() != fileMode {
		t.Errorf("mode %v", st.Mode())
	}

	o, err = OpenOutput(d, OutputOptions{MaxSize: 1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	w = NewWriter(o, Header{Program: "backlog test"}, 0)
	for _, f := range fs[:3] {
		w.Write(f)
	}
	w.Close()
	if files, _ := Files(d); len(files) != 5 {
		t.Fatalf("by size: %d files, want 5", len(files))
	}
}

func mkfifo(p string) error { return unixMkfifo(p) }
