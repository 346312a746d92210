package render

import (
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

// TestLiveKeysInOneMessage: "/" followed by a port, read by the view as one
// message, still opens the filter with the port in it.
func TestLiveKeysInOneMessage(t *testing.T) {
	m := NewLive(time.Second)
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("/8080")})
	if !m.filtering || m.filter != "8080" {
		t.Fatalf("filtering %v, filter %q; want the filter open with 8080", m.filtering, m.filter)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if m.filtering || m.filter != "8080" {
		t.Fatalf("after Enter: filtering %v, filter %q", m.filtering, m.filter)
	}
}
