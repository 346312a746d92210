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

	"golang.org/x/sys/unix"
)

// OutputOptions say where and how a recorder writes.
type OutputOptions struct {
	// MaxSize and MaxAge start a new file in directory mode once the
	// current one is that large or that old; zero means never.
	MaxSize int64
	MaxAge  time.Duration
	// Keep is how many files directory mode keeps; older ones are deleted.
	// Zero keeps all.
	Keep int
	// Now is the clock (time.Now when nil), for tests.
	Now func() time.Time
}

// Output is where records go: one file, or a directory of files rotated by
// size and age. It runs as root, so every file is created with openat(2)
// and O_NOFOLLOW inside a directory that only its owner can write, never
// through a path another user could swap (CVE-2025-27591 in below).
type Output struct {
	opts    OutputOptions
	dir     *os.File // the directory, checked once and then used by fd
	dirPath string
	name    string // file mode: the file's name in dir; "" in directory mode
	f       *os.File
	size    int64
	opened  time.Time
	fresh   bool // no record written to the current file since it opened
}

// OpenOutput opens path for recording: a directory (files rotate inside
// it) or a file (appended to; a torn tail left by a crash is cut first).
func OpenOutput(path string, opts OutputOptions) (*Output, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	o := &Output{opts: opts}
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		o.dirPath = path
	case err == nil || errors.Is(err, os.ErrNotExist):
		if strings.HasSuffix(path, "/") {
			return nil, fmt.Errorf("recording directory %s does not exist: create it (owned by root, mode 0750)", path)
		}
		o.dirPath, o.name = filepath.Dir(path), filepath.Base(path)
	default:
		return nil, fmt.Errorf("recording to %s: %w", path, err)
	}
	if o.dir, err = openDir(o.dirPath, path); err != nil {
		return nil, err
	}
	if err := o.open(); err != nil {
		o.dir.Close()
		return nil, err
	}
	return o, nil
}

// openDir opens a directory and checks that nobody but its owner (root or
// this user) can create or replace files in it.
func openDir(path, asked string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, &UnsafeError{asked, "a component of the path is not a directory"}
		}
		return nil, fmt.Errorf("opening the recording directory %s: %w", path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("checking the recording directory %s: %w", path, err)
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Uid != 0 && st.Uid != euid:
		d.Close()
		return nil, &UnsafeError{asked, fmt.Sprintf("%s is owned by uid %d, not by root or this user; use a directory only root can write, e.g. /var/lib/backlog", path, st.Uid)}
	case st.Mode&0o022 != 0:
		d.Close()
		return nil, &UnsafeError{asked, fmt.Sprintf("%s is writable by group or others (mode %04o); use a directory only its owner can write (chmod go-w, e.g. 0750)", path, st.Mode&0o7777)}
	}
	return d, nil
}

// checkFile refuses a file another user could have planted or linked.
func checkFile(path string, f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return &UnsafeError{path, "it is not a regular file"}
	case st.Uid != uint32(os.Geteuid()):
		return &UnsafeError{path, fmt.Sprintf("the file is owned by uid %d, not by this user; remove it or record elsewhere", st.Uid)}
	case st.Nlink != 1:
		return &UnsafeError{path, fmt.Sprintf("the file has %d hard links; remove it or record elsewhere", st.Nlink)}
	case st.Mode&0o022 != 0:
		return &UnsafeError{path, fmt.Sprintf("the file is writable by group or others (mode %04o); chmod go-w it", st.Mode&0o7777)}
	}
	return nil
}

const fileMode = 0o640

// createAt creates name in the directory, never following a symlink and
// never reusing a file.
func (o *Output) createAt(name string) (*os.File, error) {
	path := filepath.Join(o.dirPath, name)
	fd, err := unix.Openat(int(o.dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_APPEND|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return nil, openError(path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

func openError(path string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) {
		return &UnsafeError{path, "it is a symbolic link; give the real path"}
	}
	return fmt.Errorf("opening %s: %w", path, err)
}

// open opens the current file: the named one, or a new one in the directory.
func (o *Output) open() error {
	now := o.opts.Now()
	if o.name != "" {
		return o.openNamed(now)
	}
	base := "backlog-" + now.UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		name := base + ".blr"
		if i > 0 {
			name = fmt.Sprintf("%s-%d.blr", base, i)
		}
		f, err := o.createAt(name)
		if errors.Is(err, unix.EEXIST) && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		o.f, o.size, o.opened, o.fresh = f, 0, now, true
		return o.prune()
	}
}

func (o *Output) openNamed(now time.Time) error {
	path := filepath.Join(o.dirPath, o.name)
	fd, err := unix.Openat(int(o.dir.Fd()), o.name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		f, err := o.createAt(o.name)
		if err != nil {
			return err
		}
		o.f, o.size, o.opened, o.fresh = f, 0, now, true
		return nil
	}
	if err != nil {
		return openError(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkFile(path, f); err != nil {
		f.Close()
		return err
	}
	// Cut a torn tail so the new records follow whole ones.
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("reading %s before appending: %w", path, err)
	}
	end := int64(ValidPrefix(b))
	if end < int64(len(b)) {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return fmt.Errorf("cutting the torn tail of %s: %w", path, err)
		}
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	o.f, o.size, o.opened, o.fresh = f, end, now, true
	return nil
}

// prune deletes the oldest recordings beyond Keep.
func (o *Output) prune() error {
	if o.opts.Keep <= 0 {
		return nil
	}
	names, err := o.recordings()
	if err != nil {
		return err
	}
	for len(names) > o.opts.Keep {
		if err := unix.Unlinkat(int(o.dir.Fd()), names[0], 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing the old recording %s: %w", names[0], err)
		}
		names = names[1:]
	}
	return nil
}

// recordings lists the directory's recordings, oldest first.
func (o *Output) recordings() ([]string, error) {
	fd, err := unix.Openat(int(o.dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), o.dirPath)
	defer d.Close()
	all, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range all {
		if IsRecordingName(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Fresh reports whether the current file has no record yet: the writer
// starts it with a header.
func (o *Output) Fresh() bool { return o.fresh }

// Path is the current file.
func (o *Output) Path() string { return o.f.Name() }

// Due reports whether directory mode should start a new file.
func (o *Output) Due() bool {
	if o.name != "" {
		return false
	}
	return o.opts.MaxSize > 0 && o.size >= o.opts.MaxSize ||
		o.opts.MaxAge > 0 && o.opts.Now().Sub(o.opened) >= o.opts.MaxAge
}

// Rotate closes the current file and starts the next one.
func (o *Output) Rotate() error {
	if err := o.closeFile(); err != nil {
		return err
	}
	return o.open()
}

// Write appends one record with one write(2), so a crash can tear only the
// last record.
func (o *Output) Write(rec []byte) error {
	n, err := o.f.Write(rec)
	o.size += int64(n)
	o.fresh = false
	if err != nil {
		return fmt.Errorf("writing %s: %w", o.f.Name(), err)
	}
	return nil
}

func (o *Output) closeFile() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Sync()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	o.f = nil
	return err
}

// Close syncs and closes the file.
func (o *Output) Close() error {
	err := o.closeFile()
	o.dir.Close()
	return err
}
