package trace

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/backlog-dev/backlog/internal/testutil"
)

// TestGenerateReproducible compiles bpf/backlog.c again exactly as
// `go generate` does (the //go:generate line of gen.go, into a temporary
// directory) and checks the result is byte for byte what is committed.
// It needs clang, llvm-strip and libbpf headers (scripts/test.sh installs
// them); without them it skips.
func TestGenerateReproducible(t *testing.T) {
	testutil.GenerateReproducible(t, "trace", "bpf_x86_bpfel.go", "bpf_x86_bpfel.o")
}

// TestBuildWithoutClang: this package, the only one with eBPF code, builds
// with nothing but Go on PATH: the committed object is embedded.
func TestBuildWithoutClang(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package; skipped with -short")
	}
	// The real go binary's directory (GOROOT/bin): a PATH of that alone
	// holds no clang.
	goTool, err := filepath.EvalSymlinks(testutil.RequireTool(t, "go"))
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	goBin := filepath.Dir(goTool)
	cmd := exec.Command(goTool, "build", ".")
	cmd.Env = append(os.Environ(), "PATH="+goBin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build with PATH=%s: %v\n%s", goBin, err, out)
	}
}
