package record

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// UnsafeError says why a path was refused.
type UnsafeError struct {
	Path, Why string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("refusing to record to %s: %s", e.Path, e.Why)
}

// IsRecordingName reports whether a file name is one directory mode writes.
func IsRecordingName(n string) bool {
	return strings.HasPrefix(n, "backlog-") && strings.HasSuffix(n, ".blr")
}

// Files returns the recordings at path: the file itself, or a directory's
// recordings oldest first.
func Files(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening the recording: %w", err)
	}
	if !st.IsDir() {
		// A device or FIFO (/dev/zero, /dev/full) would be read forever
		// into memory.
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("opening the recording: %s is not a file or a directory of recordings", path)
		}
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("listing recordings: %w", err)
	}
	var out []string
	for _, e := range ents {
		if IsRecordingName(e.Name()) && e.Type().IsRegular() {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no recordings (backlog-*.blr) in %s", path)
	}
	return out, nil
}

// ErrStop, returned by Read's fn, stops reading without an error.
var ErrStop = errors.New("stop reading")

func fileDamage(name string, d *Decoder) []Damage {
	out := slices.Clone(d.Damaged())
	for i := range out {
		out[i].File = name
	}
	return out
}

// Window selects frames by time; a zero bound is open.
type Window struct{ Since, Until time.Time }

// Contains reports whether t is inside the window.
func (w Window) Contains(t time.Time) bool {
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || !t.After(w.Until))
}

// Read calls fn with every frame of the recording at path inside the
// window, in order, and returns what it had to skip. fn's error stops it.
// It holds one file in memory at a time.
func Read(path string, win Window, fn func(*Frame) error) ([]Damage, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	var damaged []Damage
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return damaged, fmt.Errorf("reading the recording: %w", err)
		}
		d := NewDecoder(b)
		for {
			f, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return damaged, err
			}
			if !win.Until.IsZero() && f.Snapshot.TakenAt.After(win.Until) {
				break
			}
			if !win.Contains(f.Snapshot.TakenAt) {
				continue
			}
			if err := fn(f); err != nil {
				if errors.Is(err, ErrStop) {
					err = nil
				}
				return append(damaged, fileDamage(name, d)...), err
			}
		}
		damaged = append(damaged, fileDamage(name, d)...)
	}
	return damaged, nil
}
