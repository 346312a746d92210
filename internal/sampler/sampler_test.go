package sampler

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/collect"
)

// TestVanishedSpecNotCounted: a --netns namespace gone since it resolved
// is the collection's to report, once; the sampler neither counts nor
// logs it at every round.
func TestVanishedSpecNotCounted(t *testing.T) {
	var log strings.Builder
	s := New(Options{
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
		Resolve: func() ([]collect.Target, error) {
			return nil, fmt.Errorf("backlog: %w \"blue\": gone", collect.ErrBadSpec)
		},
	})
	for range 3 {
		s.resolve()
	}
	if st := s.Stats(); st.Errors != 0 || log.Len() != 0 {
		t.Errorf("errors %d, log %q; want neither", st.Errors, log.String())
	}
}
