// Package render turns snapshots into what people and programs read: an
// aligned table and the JSON of docs/json.md.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// DropsHelp explains the DROPS column; it is printed under every table.
const DropsHelp = "DROPS is the listener's sk_drops, in packets, not refused clients: retransmitted SYNs count again, a final ACK dropped\n" +
	"on a full accept queue twice, and a RST ending a half-open handshake once (a port scan, no client lost)."

// JSON writes the snapshot as one JSON object: indented for a terminal,
// compact on one line otherwise (a pipe or file), where the indenting
// encoder cost several times the collection itself at 10,000 listeners.
// The content is the same.
func JSON(w io.Writer, s *snapshot.Snapshot) error { return writeJSON(w, s, isTerminal(w)) }

// writeJSON writes what json.Encoder writes, with SetIndent("", "  ") when
// indent.
func writeJSON(w io.Writer, s *snapshot.Snapshot, indent bool) error {
	if !indent {
		return s.EncodeJSON(w)
	}
	var b, ind bytes.Buffer
	if err := s.EncodeJSON(&b); err != nil {
		return err
	}
	if err := json.Indent(&ind, b.Bytes(), "", "  "); err != nil {
		return err
	}
	_, err := w.Write(ind.Bytes())
	return err
}

// Table writes one block per namespace: its listeners, fullest first, then
// its sysctls and TcpExt listen counters.
func Table(w io.Writer, s *snapshot.Snapshot) error { return table(w, s, false) }

// FilteredTable is Table for a snapshot narrowed by listener filters
// (--port, --pid...): only the namespaces that hold a listener that
// matched, so a filter over a hundred pods prints one block, not a
// hundred "(no listeners)"; and one line when nothing matched.
func FilteredTable(w io.Writer, s *snapshot.Snapshot) error {
	if len(s.Listeners) == 0 {
		fmt.Fprintf(w, "no listener matches the filters in %s\n", plural(len(s.Namespaces), "namespace"))
		return nil
	}
	return table(w, s, true)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func table(w io.Writer, s *snapshot.Snapshot, onlyMatched bool) error {
	matched := map[uint64]bool{}
	for _, l := range s.Listeners {
		matched[l.Netns] = true
	}
	// The WORKLOAD column only where some listener runs in a container.
	workloads := hasWorkload(s)
	if s.Node != "" && workloads {
		fmt.Fprintf(w, "node %s\n\n", s.Node)
	}
	first := true
	for _, ns := range s.Namespaces {
		if onlyMatched && !matched[ns.Inode] {
			continue
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		fmt.Fprintf(w, "%s (netns %d)", ns.Name, ns.Inode)
		if ns.Workload != nil {
			fmt.Fprintf(w, " %s", ns.Workload)
		}
		fmt.Fprintln(w)
		if ns.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", ns.Error)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		head := "  ADDRESS:PORT\tACCEPT-Q/BACKLOG\tFILL\tSYN-Q\tDROPS\tPROCESS"
		if workloads {
			head += "\tWORKLOAD"
		}
		fmt.Fprintln(tw, head)
		n := 0
		for i := range s.Listeners {
			l := &s.Listeners[i]
			if l.Netns != ns.Inode {
				continue
			}
			n++
			fmt.Fprintf(tw, "  %s\t%d/%d\t%s\t%s\t%s\t%s",
				l.Local(), l.AcceptQueue, l.Backlog, Fill(l),
				SynQueue(l), optional(l.Drops), Processes(l.Processes))
			if workloads {
				fmt.Fprintf(tw, "\t%s", Workload(l.Workload))
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintln(w, "  (no listeners)")
		}
		reuseportGroups(w, s, ns.Inode)
		fmt.Fprintf(w, "  sysctls: %s\n", joinNamed(ns.Sysctls.Named()))
		fmt.Fprintf(w, "  TcpExt:  %s\n", joinNamed(ns.Counters.Named()))
	}
	fmt.Fprintln(w, DropsHelp)
	if slices.ContainsFunc(s.Listeners, func(l snapshot.Listener) bool { return l.Backlog == 0 && !l.IsUnix() }) {
		fmt.Fprintln(w, BacklogZeroHelp)
	}
	return nil
}

// BacklogZeroHelp explains a backlog of 0, printed under a table that has one.
const BacklogZeroHelp = "BACKLOG 0: the server called listen(fd, 0), as memcached does at its -c connection limit: one connection\n" +
	"fits in the accept queue (backlog+1), further SYNs are dropped."

// Endpoint prints address:port, with brackets for IPv6.
func Endpoint(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// SynQueue prints the SYN queue; "-" for a UNIX listener, which has none,
// "?" for a SO_REUSEPORT member read with sock_diag, whose own is unknown
// (the group's total is on the group's line). Unfinished TCP Fast Open
// handshakes, counted apart, follow as "+N TFO" when there are any.
func SynQueue(l *snapshot.Listener) string {
	if l.IsUnix() {
		return "-"
	}
	s := "?"
	if l.SynQueue != nil {
		s = strconv.FormatUint(uint64(*l.SynQueue), 10)
	}
	if l.FastOpenQueue > 0 {
		s += " +" + strconv.FormatUint(uint64(l.FastOpenQueue), 10) + " TFO"
	}
	return s
}

// Fill prints the accept queue as a percentage of the backlog.
func Fill(l *snapshot.Listener) string {
	f, ok := l.Fill()
	if !ok {
		if l.Full() {
			return "full" // backlog 0 holding its one connection
		}
		return "empty" // backlog 0: one connection fits
	}
	return strconv.Itoa(int(f*100+0.5)) + "%"
}

// Processes prints owners as comm(pid),...; "?" when they are unknown.
// A stopped owner is marked "stopped", a pre-fork master "master". When
// some owners serve the socket (poll it), only those and the master are
// listed and the other holders counted: each SO_REUSEPORT member of nginx
// is held by every worker but served by one.
func Processes(ps []snapshot.Process) string {
	if ps == nil {
		return "?"
	}
	if len(ps) == 0 {
		return "-"
	}
	served := slices.ContainsFunc(ps, func(p snapshot.Process) bool { return p.Serving })
	var parts []string
	others := 0
	for _, p := range ps {
		if served && !p.Serving && p.Role != snapshot.RoleMaster {
			others++
			continue
		}
		var tags []string
		if p.Stopped() {
			tags = append(tags, "stopped")
		}
		if p.Role == snapshot.RoleMaster {
			tags = append(tags, "master")
		}
		if len(tags) == 0 {
			parts = append(parts, fmt.Sprintf("%s(%d)", p.Comm, p.PID))
		} else {
			parts = append(parts, fmt.Sprintf("%s(%d %s)", p.Comm, p.PID, strings.Join(tags, " ")))
		}
	}
	if others > 0 {
		parts = append(parts, fmt.Sprintf("+%d holding", others))
	}
	return strings.Join(parts, ",")
}

// Workload prints a pod as NAMESPACE/POD/CONTAINER and a plain container
// as RUNTIME:NAME; "-" for none.
func Workload(w *snapshot.Workload) string {
	if w == nil {
		return "-"
	}
	return w.String()
}

func optional(p *uint64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatUint(*p, 10)
}

func joinNamed(nv []snapshot.NamedValue) string {
	if len(nv) == 0 {
		return "(not available)"
	}
	parts := make([]string, len(nv))
	for i, v := range nv {
		parts[i] = v.Name + "=" + strconv.FormatInt(v.Value, 10)
	}
	return strings.Join(parts, " ")
}

func hasWorkload(s *snapshot.Snapshot) bool {
	for i := range s.Listeners {
		if s.Listeners[i].Workload != nil {
			return true
		}
	}
	return false
}

// reuseportGroups prints one line per SO_REUSEPORT group of the namespace:
// TCP listeners sharing an address and port (only SO_REUSEPORT allows
// that), each member with its own accept queue, so an unbalanced group
// shows at a glance.
func reuseportGroups(w io.Writer, s *snapshot.Snapshot, netns uint64) {
	members := map[string][]string{}
	syn := map[string]*uint32{}
	var order []string
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.Netns != netns || l.IsUnix() {
			continue
		}
		k := l.Local()
		if members[k] == nil {
			order = append(order, k)
		}
		members[k] = append(members[k], fmt.Sprintf("%d/%d", l.AcceptQueue, l.Backlog))
		if l.SynQueue == nil && l.GroupSynQueue != nil {
			syn[k] = l.GroupSynQueue
		}
	}
	for _, k := range order {
		if m := members[k]; len(m) > 1 {
			fmt.Fprintf(w, "  SO_REUSEPORT group %s: %d members, accept queues %s", k, len(m), strings.Join(m, " "))
			if n := syn[k]; n != nil {
				fmt.Fprintf(w, "; SYN queue %d for the group (SYN-Q ?: sock_diag names no listener on a half-open request, so each member's is unknown; BPF iterators read it)", *n)
			}
			fmt.Fprintln(w)
		}
	}
}
