package render

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Findings writes the doctor's findings, most severe first.
func Findings(w io.Writer, fs []doctor.Finding) error {
	for i, f := range fs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		where := "namespace " + f.Namespace
		if f.Namespace == "" {
			where = fmt.Sprintf("%d namespaces", f.Evidence["namespaces"])
		}
		if f.Listener != "" {
			where += ", " + f.Listener
		}
		if len(f.Processes) > 0 {
			where += ", " + Processes(f.Processes)
		}
		if f.Workload != nil {
			where += ", " + workloadWords(f.Workload)
		}
		fmt.Fprintf(w, "%s [%s] %s\n", strings.ToUpper(f.Severity), f.Rule, f.Summary)
		fmt.Fprintf(w, "  where:    %s\n", where)
		var ev []string
		for _, k := range slices.Sorted(maps.Keys(f.Evidence)) {
			ev = append(ev, fmt.Sprintf("%s=%d", k, f.Evidence[k]))
		}
		fmt.Fprintf(w, "  evidence: %s\n", strings.Join(ev, " "))
		writeWrapped(w, "  why:      ", f.Why)
		writeWrapped(w, "  do:       ", f.Advice)
		if f.Command != "" {
			fmt.Fprintf(w, "  command:  %s\n", f.Command)
		}
	}
	return nil
}

func writeWrapped(w io.Writer, prefix, text string) {
	for i, line := range wrap(text, 76) {
		if i > 0 {
			prefix = strings.Repeat(" ", len(prefix))
		}
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}
}

// workloadWords says "pod NAMESPACE/POD container C" or "docker container
// NAME" for a finding.
func workloadWords(w *snapshot.Workload) string {
	if w.Pod != "" || w.PodUID != "" {
		s := "pod " + w.String()
		if w.Container != "" {
			s = "pod " + strings.TrimSuffix(w.String(), "/"+w.Container) + " container " + w.Container
		}
		return s
	}
	return strings.TrimSpace(w.Runtime + " container " + cmp.Or(w.Container, w.ContainerID))
}
