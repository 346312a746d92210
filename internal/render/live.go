package render

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// FrameMsg hands the live view a new delta (or the error that stopped one).
type FrameMsg struct {
	Delta snapshot.Delta
	// Notes say in one line what the delta cannot show (a default narrowed
	// to one namespace, refused processes); shown above the listeners.
	Notes string
	Err   error
}

// Sort orders of the live view, with the key that selects each.
var sortKeys = []struct {
	key, name string
}{{"f", "fill"}, {"d", "drops"}, {"s", "syn"}, {"o", "port"}, {"n", "netns"}}

const (
	historyLen = 16
	minWidth   = 40
	minHeight  = 6
	headerRows = 4 // title, rates, caps, column header
	footerRows = 1
)

var (
	styleFull     = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	styleDropping = lipgloss.NewStyle().Foreground(lipgloss.Color("11"))
	styleSelected = lipgloss.NewStyle().Reverse(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
)

// Live is the full-screen view of `backlog top`, a bubbletea model. It
// shows the last delta it was sent; it does no I/O.
type Live struct {
	interval time.Duration

	width, height int
	delta         snapshot.Delta
	pending       *snapshot.Delta // arrived while paused
	history       map[snapshot.ListenerKey][]uint32
	names         map[uint64]string
	frames        int

	sortBy    string
	filter    string
	filtering bool
	paused    bool
	help      bool
	cursor    int
	offset    int
	err       error
	notes     string

	// rows point into delta.Listeners, sorted and filtered: at 10,000
	// listeners copying the rows at every frame cost more than sorting.
	rows []*snapshot.ListenerDelta

	// status, when set, replaces the refresh interval in the title: the
	// replay's time cursor.
	status string
	// footer, when set, replaces the key help at the bottom.
	footer string
}

// NewLive returns the live view for a refresh interval.
func NewLive(interval time.Duration) *Live {
	return &Live{interval: interval, sortBy: "fill", history: map[snapshot.ListenerKey][]uint32{}, names: map[uint64]string{}}
}

// Init starts nothing: frames arrive from the collector.
func (m *Live) Init() tea.Cmd { return nil }

// Update handles keys, resizes and frames.
func (m *Live) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case FrameMsg:
		if msg.Err != nil {
			m.err = msg.Err
			return m, nil
		}
		m.err = nil
		m.notes = msg.Notes
		m.record(msg.Delta)
		if m.paused {
			d := msg.Delta
			m.pending = &d
			return m, nil
		}
		m.delta = msg.Delta
	case tea.KeyMsg:
		return m, m.key(msg)
	}
	m.layout()
	return m, nil
}

// record keeps each listener's peak history, and forgets listeners gone.
func (m *Live) record(d snapshot.Delta) {
	m.frames++
	seen := make(map[snapshot.ListenerKey]bool, len(d.Listeners))
	for _, l := range d.Listeners {
		k := l.Key()
		seen[k] = true
		h := m.history[k]
		if len(h) == historyLen { // shift in place: no new array per frame
			copy(h, h[1:])
			h[len(h)-1] = l.AcceptQueuePeak
			continue
		}
		m.history[k] = append(h, l.AcceptQueuePeak)
	}
	for k := range m.history {
		if !seen[k] {
			delete(m.history, k)
		}
	}
	for _, ns := range d.Namespaces {
		m.names[ns.Inode] = ns.Name
	}
}

func (m *Live) key(k tea.KeyMsg) tea.Cmd {
	// Keys typed faster than the view reads them arrive as one message
	// ("/8080" on a loaded machine): take them one at a time, so "/" still
	// opens the filter.
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 && !k.Paste {
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			cmds = append(cmds, m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: k.Alt}))
		}
		return tea.Batch(cmds...)
	}
	if m.filtering {
		switch k.Type {
		case tea.KeyEnter, tea.KeyEsc:
			m.filtering = false
			if k.Type == tea.KeyEsc {
				m.filter = ""
			}
		case tea.KeyBackspace:
			if r := []rune(m.filter); len(r) > 0 {
				m.filter = string(r[:len(r)-1])
			}
		case tea.KeyCtrlC:
			return tea.Quit
		case tea.KeyRunes, tea.KeySpace:
			m.filter += string(k.Runes)
		}
		m.cursor, m.offset = 0, 0
		m.layout()
		return nil
	}
	switch k.String() {
	case "q", "ctrl+c", "esc":
		return tea.Quit
	case "/":
		m.filtering = true
	case " ", "p":
		m.paused = !m.paused
		if !m.paused && m.pending != nil {
			m.delta, m.pending = *m.pending, nil
		}
	case "?", "h":
		m.help = !m.help
	case "up", "k":
		m.cursor--
	case "down", "j":
		m.cursor++
	case "pgup":
		m.cursor -= m.pageRows()
	case "pgdown":
		m.cursor += m.pageRows()
	case "home", "g":
		m.cursor = 0
	case "end", "G":
		m.cursor = len(m.rows) - 1
	default:
		for _, s := range sortKeys {
			if k.String() == s.key {
				m.sortBy = s.name
			}
		}
	}
	m.layout()
	return nil
}

func (m *Live) pageRows() int { return max(1, m.height-headerRows-footerRows) }

// layout sorts and filters the rows and keeps the cursor on screen.
func (m *Live) layout() {
	rows := make([]*snapshot.ListenerDelta, 0, len(m.delta.Listeners))
	f := strings.ToLower(m.filter)
	for i := range m.delta.Listeners {
		l := &m.delta.Listeners[i]
		if f == "" || strings.Contains(strings.ToLower(m.rowText(l)), f) {
			rows = append(rows, l)
		}
	}
	slices.SortStableFunc(rows, m.less)
	m.rows = rows
	m.cursor = max(0, min(m.cursor, len(rows)-1))
	page := m.pageRows()
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+page {
		m.offset = m.cursor - page + 1
	}
	m.offset = max(0, min(m.offset, len(rows)-page))
}

// rowText is what the filter matches: namespace, endpoint and processes.
func (m *Live) rowText(l *snapshot.ListenerDelta) string {
	return m.names[l.Netns] + " " + l.Local() + " " + Processes(l.Processes) + " " + l.Workload.String()
}

func peakFill(l *snapshot.ListenerDelta) float64 {
	if l.Backlog == 0 {
		return float64(l.AcceptQueuePeak)
	}
	return float64(l.AcceptQueuePeak) / float64(l.Backlog)
}

func dropRate(l *snapshot.ListenerDelta) float64 {
	if l.DropsPerSecond == nil {
		return 0
	}
	return *l.DropsPerSecond
}

func (m *Live) less(a, b *snapshot.ListenerDelta) int {
	tie := cmp.Or(cmp.Compare(peakFill(b), peakFill(a)), cmp.Compare(dropRate(b), dropRate(a)),
		cmp.Compare(a.Port, b.Port), cmp.Compare(a.Inode, b.Inode))
	switch m.sortBy {
	case "drops":
		return cmp.Or(cmp.Compare(dropRate(b), dropRate(a)), tie)
	case "syn":
		return cmp.Or(cmp.Compare(b.SynQueueLen(), a.SynQueueLen()), tie)
	case "port":
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Path, b.Path), tie)
	case "netns":
		return cmp.Or(cmp.Compare(m.names[a.Netns], m.names[b.Netns]), tie)
	}
	return tie
}

// View draws the screen.
func (m *Live) View() string {
	if m.width == 0 {
		return "starting..."
	}
	if m.width < minWidth || m.height < minHeight {
		return fmt.Sprintf("terminal too small (%dx%d): backlog top needs %dx%d", m.width, m.height, minWidth, minHeight)
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(truncate(s, m.width) + "\n") }

	state := ""
	if m.paused {
		state = "  [PAUSED]"
	}
	if m.filtering || m.filter != "" {
		state += "  filter: " + m.filter
		if m.filtering {
			state += "_"
		}
	}
	head := fmt.Sprintf("every %v  %s", m.interval, m.delta.TakenAt.Local().Format("15:04:05"))
	if m.status != "" {
		head = m.status
	}
	line(fmt.Sprintf("backlog top  %s  %d namespaces  %d/%d listeners  sort: %s%s",
		head, len(m.delta.Namespaces), len(m.rows), len(m.delta.Listeners), m.sortBy, state))
	line(m.ratesLine())
	line(m.capsLine())
	cols := m.columns()
	line(styleDim.Render(truncate(cols.header(), m.width)))

	page := m.pageRows()
	if m.help {
		for _, h := range helpLines {
			line(h)
			page--
		}
	}
	if m.err != nil {
		line(styleFull.Render("error: " + m.err.Error()))
		page--
	}
	if m.notes != "" {
		line(styleDropping.Render("note: " + m.notes))
		page--
	}
	if m.frames == 0 {
		line("collecting...")
		page--
	}
	for i := m.offset; i < len(m.rows) && i < m.offset+page; i++ {
		l := m.rows[i]
		s := truncate(cols.row(l, m.names[l.Netns], m.history[l.Key()]), m.width)
		switch {
		case i == m.cursor:
			s = styleSelected.Render(s)
		case l.AcceptQueuePeak > l.Backlog:
			s = styleFull.Render(s)
		case dropRate(l) > 0:
			s = styleDropping.Render(s)
		}
		b.WriteString(s + "\n")
	}
	for n := strings.Count(b.String(), "\n"); n < m.height-footerRows; n++ {
		b.WriteString("\n")
	}
	footer := "q quit  f fill  d drops  s syn  o port  n netns  / filter  space pause  ↑↓ scroll  ? help"
	if m.footer != "" {
		footer = m.footer
	}
	b.WriteString(styleDim.Render(truncate(footer, m.width)))
	return b.String()
}

var helpLines = []string{
	"  PEAK is the longest accept queue sampled during the interval; a full queue holds backlog+1.",
	"  DROP/s is the listener's sk_drops rate: packets, not clients (retransmitted SYNs again, RSTs of port scans too).",
	"  Red rows: accept queue overflowed in the interval. Yellow rows: dropping.",
}

// ratesLine sums the namespace-wide rates that matter over all namespaces.
func (m *Live) ratesLine() string {
	names := []string{"ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent"}
	sum := make([]float64, len(names))
	for _, ns := range m.delta.Namespaces {
		for i, n := range names {
			sum[i] += ns.Rates[n]
		}
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s/s %.1f", n, sum[i])
	}
	return m.scope() + ": " + strings.Join(parts, "  ")
}

// scope names what the view covers: the namespace when there is one, else
// how many, never "all" (the caller may see only its own).
func (m *Live) scope() string {
	if len(m.delta.Namespaces) == 1 {
		return "namespace " + m.delta.Namespaces[0].Name
	}
	return fmt.Sprintf("%d namespaces", len(m.delta.Namespaces))
}

// capsLine shows the sysctls of the selected row's namespace.
func (m *Live) capsLine() string {
	if len(m.rows) == 0 {
		return ""
	}
	inode := m.rows[m.cursor].Netns
	for _, ns := range m.delta.Namespaces {
		if ns.Inode != inode {
			continue
		}
		s := ns.Sysctls
		return fmt.Sprintf("caps in %s: somaxconn %s  tcp_max_syn_backlog %s  syncookies %s  abort_on_overflow %s",
			ns.Name, opt(s.Somaxconn), opt(s.TCPMaxSynBacklog), opt(s.TCPSyncookies), opt(s.TCPAbortOnOverflow))
	}
	return ""
}

func opt(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// liveColumns decides which columns fit the terminal.
type liveColumns struct{ netns, history, bar bool }

// columns narrows by what a reader needs. Without NETNS, listeners of
// different namespaces on the same address look identical, so it goes
// last; the FILL bar repeats PEAK/BACKLOG, and HISTORY is the past: they
// go first. Widths: NETNS 15, the core 57, FILL 17, HISTORY 17, and room
// for PROCESS.
func (m *Live) columns() liveColumns {
	return liveColumns{
		netns:   m.width >= 80,
		bar:     m.width >= 100,
		history: m.width >= 120,
	}
}

func (c liveColumns) header() string {
	s := ""
	if c.netns {
		s += fmt.Sprintf("%-14s ", "NETNS")
	}
	s += fmt.Sprintf("%-22s %5s %5s %7s ", "ADDRESS:PORT", "ACC-Q", "PEAK", "BACKLOG")
	if c.bar {
		s += fmt.Sprintf("%-16s ", "FILL (PEAK)")
	}
	s += fmt.Sprintf("%5s %7s ", "SYN-Q", "DROP/s")
	if c.history {
		s += fmt.Sprintf("%-*s ", historyLen, "HISTORY")
	}
	return s + "PROCESS [WORKLOAD]"
}

func (c liveColumns) row(l *snapshot.ListenerDelta, netns string, hist []uint32) string {
	s := ""
	if c.netns {
		s += fmt.Sprintf("%-14s ", truncate(netns, 14))
	}
	local := truncate(l.Local(), 22)
	if l.IsUnix() {
		local = truncateLeft(l.Local(), 22) // the file name says most
	}
	s += fmt.Sprintf("%-22s %5d %5d %7d ", local, l.AcceptQueue, l.AcceptQueuePeak, l.Backlog)
	if c.bar {
		s += fmt.Sprintf("%-16s ", bar(l.AcceptQueuePeak, l.Backlog))
	}
	rate := "-"
	if l.DropsPerSecond != nil {
		rate = fmt.Sprintf("%.1f", *l.DropsPerSecond)
	}
	s += fmt.Sprintf("%5s %7s ", SynQueue(&l.Listener), rate)
	if c.history {
		s += fmt.Sprintf("%-*s ", historyLen, Sparkline(hist, l.Backlog+1))
	}
	s += Processes(l.Processes)
	if l.Workload != nil {
		s += " [" + l.Workload.String() + "]"
	}
	return s
}

// bar draws the peak against the backlog: 10 cells and a percentage.
func bar(peak, backlog uint32) string {
	if backlog == 0 {
		return "[----------]   -"
	}
	n := min(10, int(float64(peak)/float64(backlog)*10+0.5))
	return fmt.Sprintf("[%s%s]%4d%%", strings.Repeat("#", n), strings.Repeat("-", 10-n), int(float64(peak)/float64(backlog)*100+0.5))
}

// Sparkline draws values scaled to top with block characters.
func Sparkline(vals []uint32, top uint32) string {
	const ticks = "▁▂▃▄▅▆▇█"
	r := []rune(ticks)
	var b strings.Builder
	for _, v := range vals {
		i := 0
		if top > 0 {
			i = min(len(r)-1, int(float64(v)/float64(top)*float64(len(r)-1)+0.5))
		}
		b.WriteRune(r[i])
	}
	return b.String()
}

// truncate cuts s to at most w runes.
// truncateLeft keeps the end of s.
func truncateLeft(s string, w int) string {
	r := []rune(s)
	if len(r) <= w {
		return s
	}
	if w <= 1 {
		return string(r[len(r)-w:])
	}
	return "…" + string(r[len(r)-w+1:])
}

func truncate(s string, w int) string {
	r := []rune(s)
	if len(r) <= w {
		return s
	}
	if w <= 1 {
		return string(r[:w])
	}
	return string(r[:w-1]) + "…"
}
