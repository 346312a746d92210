//go:build !linux

package main

import "os"

// createNoFollow creates or truncates a file.
func createNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}
