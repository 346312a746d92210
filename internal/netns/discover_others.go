//go:build !linux

package netns

// DefaultDirs are the directories of bind-mounted namespaces.
var DefaultDirs = []string{"/run/netns"}

// Discover is not supported on this system.
func Discover(string, []string) ([]Found, []Refusal, error) { return nil, nil, errNotSupported }

// InitID is not supported on this system.
func InitID(string) (ID, error) { return ID{}, errNotSupported }

// Own is not supported on this system.
func Own(string) (ID, error) { return ID{}, errNotSupported }

// MountOf is not supported on this system.
func MountOf(ID, []string) string { return "" }

// LowestPID is not supported on this system.
func LowestPID(string, ID) int { return 0 }

// IsNetns is false on this system.
func IsNetns(string) bool { return false }
