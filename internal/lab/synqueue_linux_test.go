package lab

import (
	"testing"

	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestSynQueueProbe: the probe answers, and the same way twice. Whether the
// answer is right is checked where it is used: lab synflood fills a SYN
// queue to the predicted limit (internal/lab/scenario), on every kernel of
// the matrix.
func TestSynQueueProbe(t *testing.T) {
	testutil.RequireRoot(t)
	first, err := probe()
	if err != nil {
		t.Fatal(err)
	}
	second, err := probe()
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("probe said %v, then %v", first, second)
	}
	t.Logf("SYN queue full at backlog (rule before 3479c7549fb1): %v", first)
}
