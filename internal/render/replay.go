package render

import (
	"fmt"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Replay is `backlog top --replay`: the live view fed from a recording,
// with a time cursor. It keeps the live view's keys, filter and sorting,
// and adds its own to move in time; it does no I/O.
type Replay struct {
	live    *Live
	deltas  []snapshot.Delta
	pos     int
	playing bool
	pace    time.Duration // between frames while playing
}

// replayTick advances a playing replay by one frame.
type replayTick struct{ gen int }

// NewReplay returns the view of recorded deltas, paused at frame at.
func NewReplay(deltas []snapshot.Delta, interval time.Duration, at int) *Replay {
	r := &Replay{live: NewLive(interval), deltas: deltas, pace: interval}
	r.seek(at)
	return r
}

// Init starts nothing: the replay waits for a key.
func (r *Replay) Init() tea.Cmd { return nil }

// Update moves the time cursor on its keys and hands the rest to the live
// view.
func (r *Replay) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case replayTick:
		if !r.playing || msg.gen != r.pos {
			return r, nil
		}
		if r.pos >= len(r.deltas)-1 {
			r.playing = false
			r.status()
			return r, nil
		}
		r.seek(r.pos + 1)
		return r, r.tick()
	case tea.KeyMsg:
		if r.live.filtering {
			break
		}
		step := 0
		switch msg.String() {
		case "right", ".":
			step = 1
		case "left", ",":
			step = -1
		case "]", "shift+right":
			step = 60
		case "[", "shift+left":
			step = -60
		case "<":
			step = -len(r.deltas)
		case ">":
			step = len(r.deltas)
		case "!":
			r.seek(r.nextTrouble())
			return r, nil
		case " ", "p":
			r.playing = !r.playing
			r.status()
			if r.playing {
				return r, r.tick()
			}
			return r, nil
		}
		if step != 0 {
			r.playing = false
			r.seek(r.pos + step)
			return r, nil
		}
	}
	_, cmd := r.live.Update(msg)
	return r, cmd
}

func (r *Replay) tick() tea.Cmd {
	gen := r.pos
	return tea.Tick(r.pace, func(time.Time) tea.Msg { return replayTick{gen} })
}

// seek shows frame i: the live view is rebuilt from the frames before it,
// so its history column is what it was at that moment.
func (r *Replay) seek(i int) {
	i = max(0, min(i, len(r.deltas)-1))
	r.pos = i
	fresh := NewLive(r.live.interval)
	fresh.width, fresh.height = r.live.width, r.live.height
	fresh.sortBy, fresh.filter, fresh.help = r.live.sortBy, r.live.filter, r.live.help
	fresh.cursor = r.live.cursor
	fresh.footer = replayFooter
	r.live = fresh
	for j := max(0, i-historyLen+1); j <= i && j < len(r.deltas); j++ {
		r.live.Update(FrameMsg{Delta: r.deltas[j]})
	}
	r.status()
}

// nextTrouble is the next frame after the cursor where an accept queue
// overflowed or a listener dropped, or the cursor when there is none.
func (r *Replay) nextTrouble() int {
	for i := r.pos + 1; i < len(r.deltas); i++ {
		for _, l := range r.deltas[i].Listeners {
			if l.AcceptQueuePeak > l.Backlog || dropRate(&l) > 0 {
				return i
			}
		}
	}
	return r.pos
}

func (r *Replay) status() {
	state := "paused"
	if r.playing {
		state = "playing"
	}
	t := time.Time{}
	if len(r.deltas) > 0 {
		t = r.deltas[r.pos].TakenAt
	}
	r.live.status = fmt.Sprintf("REPLAY %s  frame %d/%d %s", t.Local().Format("2006-01-02 15:04:05"), r.pos+1, len(r.deltas), state)
}

const replayFooter = "q quit  ←→ frame  [ ] minute  < > ends  ! next trouble  space play  f d s o n sort  / filter  ? help"

// View draws the live view with the replay's keys in the footer.
func (r *Replay) View() string { return r.live.View() }
