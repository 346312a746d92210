// Package netns finds network namespaces and runs code inside one.
//
// A namespace is named by a path to an nsfs file (/proc/PID/ns/net,
// /run/netns/NAME) and identified by its (device, inode) pair.
package netns
