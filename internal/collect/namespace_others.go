//go:build !linux

package collect

import (
	"fmt"
	"runtime"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func readNamespace(Target, string) (snapshot.Namespace, []snapshot.Listener, error) {
	return snapshot.Namespace{}, nil, fmt.Errorf("collect: listen queues can only be read on Linux, not on %s", runtime.GOOS)
}
