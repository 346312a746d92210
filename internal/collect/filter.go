package collect

import (
	"slices"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// Filter applies the listener filters of opts (ports, owners, workloads) to
// a snapshot that was not collected now, such as one read back from a
// recording, and keeps only the namespaces the --netns specs name: none or
// "all" keeps every one, "self" the recorder's own, otherwise a
// namespace's name or path. It reorders nothing.
func Filter(s *snapshot.Snapshot, opts Options, specs []string) {
	if len(specs) > 0 && !slices.Contains(specs, "all") {
		keep := map[uint64]bool{}
		nss := s.Namespaces[:0:0]
		for _, ns := range s.Namespaces {
			if slices.ContainsFunc(specs, func(netns string) bool {
				return netns == "self" && ns.Path == "" || ns.Name == netns || ns.Path == netns ||
					strings.TrimPrefix(ns.Path, "/run/netns/") == netns
			}) {
				keep[ns.Inode] = true
				nss = append(nss, ns)
			}
		}
		s.Namespaces = nss
		ls := s.Listeners[:0:0]
		for _, l := range s.Listeners {
			if keep[l.Netns] {
				ls = append(ls, l)
			}
		}
		s.Listeners = ls
	}
	s.Listeners = filterAddresses(s.Listeners, opts.Ports, opts.Paths)
	s.Listeners = filterOwners(s.Listeners, opts.PIDs, opts.Processes)
	s.Listeners = filterWorkloads(s.Listeners, opts.Pods, opts.Containers)
}
