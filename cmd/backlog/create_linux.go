package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// createNoFollow creates or truncates a file the user named, refusing a
// symbolic link in its place.
func createNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("refusing to write %s: it is a symbolic link; give the real path", path)
	}
	return f, err
}
