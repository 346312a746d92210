//go:build !linux

package collect

import (
	"github.com/backlog-dev/backlog/internal/bpfiter"
	"github.com/backlog-dev/backlog/internal/procfd"
)

func iterReader() (*bpfiter.Reader, error) { return nil, bpfiter.Check() }

// Source says which path Collect takes: sock_diag is all there is here.
func Source() (source, why string) { return SourceSockDiag, bpfiter.Check().Error() }

func iterOwners(*bpfiter.Reader, string, map[uint32]struct{}, func() (bpfiter.Owners, error)) (procfd.Result, error) {
	return procfd.Result{}, bpfiter.Check()
}
