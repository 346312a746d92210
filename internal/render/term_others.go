//go:build !linux

package render

import "io"

// isTerminal: indented output everywhere but Linux, where it is checked.
func isTerminal(io.Writer) bool { return true }
