// Package sockdiag is a small client for the kernel's sock_diag interface
// (NETLINK_SOCK_DIAG): inet_diag dumps of TCP sockets and unix_diag dumps
// of UNIX ones, decoded with explicit length checks, one socket at a time.
package sockdiag
