package bpfiter

// The eBPF programs are compiled ahead of time and committed
// (iter_x86_bpfel.go, iter_x86_bpfel.o): building backlog needs no clang.
// To rebuild them after changing bpf/iter.c, install clang, llvm and
// libbpf-dev (Debian) and run `go generate ./internal/bpfiter`. The kernel
// types come from internal/trace/bpf/vmlinux.h.
//go:generate go tool bpf2go -target amd64 -cc clang -strip llvm-strip -cflags "-O2 -mcpu=v3 -Wall -Werror" -type orec iter bpf/iter.c -- -I../trace/bpf
