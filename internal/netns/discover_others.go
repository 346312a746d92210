//go:build !linux

package netns

// DefaultDirs are the directories of bind-mounted namespaces.
var DefaultDirs = []string{"/run/netns"}

// Discover is not supported on this system.
func Discover(string, []string) ([]Found, int, error) { return nil, 0, errNotSupported }

// InitID is not supported on this system.
func InitID(string) (ID, error) { return ID{}, errNotSupported }
