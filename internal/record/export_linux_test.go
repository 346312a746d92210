package record

import "golang.org/x/sys/unix"

func unixMkfifo(p string) error { return unix.Mkfifo(p, 0o600) }
