package trace

// The eBPF programs are compiled ahead of time and committed
// (bpf_x86_bpfel.go, bpf_x86_bpfel.o): building backlog needs no clang. To
// rebuild them after changing bpf/backlog.c, install clang, llvm and
// libbpf-dev (Debian) and run `go generate ./internal/trace`.
//go:generate go tool bpf2go -target amd64 -cc clang -strip llvm-strip -cflags "-O2 -mcpu=v3 -Wall -Werror" -type event -type unix_event -type lkey -type lrep -type member -type wkey -type hist bpf bpf/backlog.c -- -I./bpf
