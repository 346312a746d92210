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
