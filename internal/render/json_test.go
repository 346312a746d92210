package render

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestWriteJSON: compact and indented, what json.Encoder writes.
func TestWriteJSON(t *testing.T) {
	s := unixSnapshot()
	s.Warnings = []string{"owners <unknown> & more"}
	for _, indent := range []bool{false, true} {
		var want, got bytes.Buffer
		enc := json.NewEncoder(&want)
		if indent {
			enc.SetIndent("", "  ")
		}
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(&got, s, indent); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("indent %v:\n%s\njson.Encoder:\n%s", indent, got.String(), want.String())
		}
	}
}
