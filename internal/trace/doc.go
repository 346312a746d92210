// Package trace follows handshakes through TCP listeners with eBPF: every
// packet a listener drops, with its stage, peer and queues, and how long
// accepted connections waited in the accept queue. docs/trace.md explains
// the hooks and why their counts equal the kernel's counters.
//
// Use:
//
//	if err := trace.Check(); err != nil { ... } // what the host lacks, in words
//	tr, err := trace.New(trace.Options{})     // loads, attaches, learns listeners
//	defer tr.Close()
//	go tr.Run(ctx, func(e trace.Event) { ... }) // fn may be nil
//	stats, err := tr.Stats() // per listener: drops by stage, accept-wait histogram
//
// Stats counts the events Run has read, so Run must be running for the
// drop counts; the histograms are kept in the kernel.
package trace
