package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GenerateReproducible compiles a package's eBPF C again exactly as
// `go generate` does (the //go:generate line of gen.go in the test's
// working directory, into a temporary directory) and checks that each of
// files is byte for byte what is committed. It needs clang, llvm-strip and
// libbpf headers (scripts/test.sh installs them); without them it skips.
func GenerateReproducible(t *testing.T, pkg string, files ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles C; skipped with -short")
	}
	for _, tool := range []string{"clang", "llvm-strip"} {
		RequireTool(t, tool)
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		t.Skip("needs libbpf headers (apt-get install libbpf-dev)")
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(src), "\n") {
		if s, ok := strings.CutPrefix(l, "//go:generate "); ok {
			line = s
		}
	}
	const tool = "go tool bpf2go "
	if !strings.HasPrefix(line, tool) {
		t.Fatalf("gen.go: //go:generate line %q does not run %q", line, tool)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", tool+"-output-dir '"+dir+"' "+line[len(tool):])
	cmd.Env = append(os.Environ(), "GOPACKAGE="+pkg, "GOFILE=gen.go")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	for _, name := range files {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what go generate produces now: run go generate ./internal/%s and commit it", name, pkg)
		}
	}
}

// BuildWithoutClang checks that the package in the working directory
// builds with nothing but Go on PATH: its eBPF object is committed and
// embedded, so building backlog needs no clang.
func BuildWithoutClang(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the package; skipped with -short")
	}
	// The real go binary's directory (GOROOT/bin): a PATH of that alone
	// holds no clang.
	goTool, err := filepath.EvalSymlinks(RequireTool(t, "go"))
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
