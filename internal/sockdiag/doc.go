// Package sockdiag is a small client for the kernel's inet_diag interface
// (NETLINK_SOCK_DIAG): it builds inet_diag_req_v2 dumps and decodes the
// replies with explicit length checks, streaming one socket at a time.
package sockdiag
