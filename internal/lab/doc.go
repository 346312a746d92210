// Package lab builds listen-path situations in private network namespaces:
// namespaces, veth links, nftables drops, raw listeners with a chosen backlog and clients.
package lab
