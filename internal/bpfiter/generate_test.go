package bpfiter

import (
	"testing"

	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestGenerateReproducible compiles bpf/iter.c again exactly as
// `go generate` does (the //go:generate line of gen.go, into a temporary
// directory) and checks the result is byte for byte what is committed.
// It needs clang, llvm-strip and libbpf headers (scripts/test.sh installs
// them); without them it skips.
func TestGenerateReproducible(t *testing.T) {
	testutil.GenerateReproducible(t, "bpfiter", "iter_x86_bpfel.go", "iter_x86_bpfel.o")
}

// TestBuildWithoutClang: this package builds with nothing but Go on PATH
// (the committed eBPF object is embedded).
func TestBuildWithoutClang(t *testing.T) { testutil.BuildWithoutClang(t) }
