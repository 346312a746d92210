package render

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/backlog-dev/backlog/internal/lab/scenario"
)

// Lab writes a scenario's result: what it shows, what moved, and each
// kernel rule with the number predicted and the number seen.
func Lab(w io.Writer, r *scenario.Result) error {
	fmt.Fprintf(w, "backlog lab %s   (namespace %s, removed)\n\n", r.Scenario, r.Namespace)
	for _, line := range wrap(r.Explanation, 76) {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w)
	for i := range r.Listeners {
		l := &r.Listeners[i]
		fmt.Fprintf(w, "  listener %s  accept queue %d/%d (%s)  SYN queue %s  drops %s\n",
			l.Local(), l.AcceptQueue, l.Backlog, Fill(l), SynQueue(l), optional(l.Drops))
	}
	var moved []string
	for _, k := range slices.Sorted(maps.Keys(r.Moved)) {
		if v := r.Moved[k]; v != 0 {
			moved = append(moved, fmt.Sprintf("%s %+d", k, v))
		}
	}
	if len(moved) == 0 {
		moved = []string{"nothing"}
	}
	fmt.Fprintf(w, "  TcpExt moved: %s\n", strings.Join(moved, ", "))
	if note := dropsNote(r); note != "" {
		for _, line := range wrap(note, 74) {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	var obs []string
	for _, k := range slices.Sorted(maps.Keys(r.Observed)) {
		obs = append(obs, fmt.Sprintf("%s=%d", k, r.Observed[k]))
	}
	fmt.Fprintf(w, "  observed: %s\n\n", strings.Join(obs, " "))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tKERNEL RULE\tPREDICTED\tSEEN")
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s %d\t%d\n", mark, c.Rule, c.Op, c.Want, c.Got)
	}
	return tw.Flush()
}

// dropsNote says why a listener's drops differ from ListenDrops, which
// otherwise reads as a contradiction. A final ACK refused by a full
// accept queue is counted twice in sk_drops and once in ListenDrops:
// tcp_listendrop() in tcp_v4_syn_recv_sock() bumps both, then tcp_v4_rcv()
// discards the packet against the listener (sk_drops_add()) and bumps
// sk_drops again. A SYN refused at once is counted once in each.
func dropsNote(r *scenario.Result) string {
	ld, ok := r.Moved["ListenDrops"]
	if !ok || len(r.Listeners) != 1 || r.Listeners[0].Drops == nil || int64(*r.Listeners[0].Drops) == ld {
		return ""
	}
	return fmt.Sprintf("drops %d is not ListenDrops %+d: both count packets, and a final ACK refused by a full "+
		"accept queue counts once in ListenDrops but twice in the listener's drops (tcp_listendrop(), then "+
		"the discard of the packet in tcp_v4_rcv()); a refused SYN counts once in each.", *r.Listeners[0].Drops, ld)
}

// wrap breaks text into lines of at most width runes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(text) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
