package render

import (
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func key(s string) tea.KeyMsg {
	switch s {
	case "right":
		return tea.KeyMsg{Type: tea.KeyRight}
	case "left":
		return tea.KeyMsg{Type: tea.KeyLeft}
	case " ":
		return tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// TestReplayCursor: the time cursor moves by frame, by minute, to either
// end and to the next trouble; the history column is rebuilt for the frame
// shown; the live view's own keys still sort.
func TestReplayCursor(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.Local)
	var ds []snapshot.Delta
	for i := range 100 {
		q := uint32(0)
		if i == 70 {
			q = 6 // the overflow
		}
		ds = append(ds, snapshot.Delta{TakenAt: t0.Add(time.Duration(i) * time.Second), Interval: 1,
			Listeners: []snapshot.ListenerDelta{{Listener: snapshot.Listener{Netns: 1, Inode: 7, Port: 8080, Backlog: 5, AcceptQueue: q}, AcceptQueuePeak: q}}})
	}
	r := NewReplay(ds, time.Second, 0)
	r.Update(tea.WindowSizeMsg{Width: 160, Height: 20})
	step := func(k string, wantPos int) {
		t.Helper()
		r.Update(key(k))
		if r.pos != wantPos {
			t.Fatalf("after %q at frame %d, want %d", k, r.pos, wantPos)
		}
		if want := "frame " + strconv.Itoa(wantPos+1) + "/100"; !strings.Contains(r.View(), want) {
			t.Fatalf("after %q the title lacks %q:\n%s", k, want, r.View())
		}
	}
	step("right", 1)
	step("]", 61)
	step("left", 60)
	step("!", 70)
	if v := r.View(); !strings.Contains(v, "REPLAY 2026-12-01 03:01:10") || !strings.Contains(v, "    6     6       5") {
		t.Fatalf("frame 70 does not show the overflow:\n%s", v)
	}
	if h := r.live.history[snapshot.ListenerKey{Netns: 1, Inode: 7}]; len(h) != historyLen || h[len(h)-1] != 6 {
		t.Fatalf("history %v", h)
	}
	step("!", 70) // no later trouble: stays
	step(">", 99)
	step("[", 39)
	step("<", 0)
	r.Update(key("o"))
	if !strings.Contains(r.View(), "sort: port") {
		t.Fatal("the live view's sort key was lost")
	}
	_, cmd := r.Update(key(" "))
	if !r.playing || cmd == nil {
		t.Fatal("space does not play")
	}
	r.Update(replayTick{gen: 0})
	if r.pos != 1 {
		t.Fatalf("a tick while playing moved to %d", r.pos)
	}
}
