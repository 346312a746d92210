package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoFiles returns the repository's text files with one of exts.
func repoFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		for _, e := range exts {
			if !d.IsDir() && strings.HasSuffix(p, e) && d.Name() != "vmlinux.h" {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoOutsideReferences: the repository's docs and comments stand alone;
// they never send a reader to notes that are not in it.
func TestNoOutsideReferences(t *testing.T) {
	outside := regexp.MustCompile(`\b(` + "DESIGN" + `|` + "KERNEL" + `|` + "STYLE" + `)\.md\b|\.\./` + "shared")
	for _, p := range repoFiles(t, ".go", ".md", ".sh", ".yaml", ".yml", ".c", ".h") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if outside.MatchString(line) {
				t.Errorf("%s:%d refers outside the repository: %s", p, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestDocLinks: every relative link of the Markdown files names a file that
// exists.
func TestDocLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, p := range repoFiles(t, ".md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), target)); err != nil {
				t.Errorf("%s links %s, which does not exist", p, target)
			}
		}
	}
}

// TestErrorsDoc: docs/errors.md has a row for every exit code, and the
// README links it.
func TestErrorsDoc(t *testing.T) {
	b, err := os.ReadFile("../../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{exitOK, exitFailure, exitUsage, exitTrouble} {
		if !strings.Contains(string(b), fmt.Sprintf("| **%d** |", code)) {
			t.Errorf("docs/errors.md has no row for exit code %d", code)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "(docs/errors.md)") {
		t.Error("README.md does not link docs/errors.md")
	}
}
