package cache_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// addDebugTree adds to the store a path with separate debug info and names
// that JSON escaping gets wrong (content-addressed, so the same path each
// run), and returns it.
func addDebugTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "debug-tree")
	for name, content := range map[string]string{
		"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug": "dwarf 1",
		"lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug": "dwarf 2",
		"lib/debug/.build-id/cd/short.debug":                                  "skipped",
		"bin/tool":                                                            "#!/bin/sh\n",
		"share/q\"uote\\back\ttab\x01":                                        "",
		"share/é\x7f":                                                         "x",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "bin/tool"), 0o755)
	os.Symlink("../ab/cdef0123456789abcdef0123456789abcdef01.debug", filepath.Join(dir, "lib/debug/.build-id/cd/1123456789abcdef0123456789abcdef012345.debug"))
	return nixtest.Run(t, "nix-store", "--add", dir)
}

// indexFiles returns the listings and debuginfo entries of a cache.
func indexFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ls, _ := filepath.Glob(filepath.Join(dir, "*.ls"))
	di, _ := filepath.Glob(filepath.Join(dir, "debuginfo", "*"))
	for _, f := range append(ls, di...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, f)
		out[rel] = string(b)
	}
	return out
}

// --nar-listing and --index-debug-info write what nix copy writes with
// ?write-nar-listing=1&index-debug-info=1, byte for byte. Uncompressed, the
// NAR file names (and so the debuginfo archives) are the same too.
func TestIndexMatchesNixCopy(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	tree := addDebugTree(t)
	nixDir := t.TempDir()
	nixtest.Run(t, "nix", "--extra-experimental-features", "nix-command", "copy", "--to",
		"file://"+nixDir+"?compression=none&write-nar-listing=1&index-debug-info=1", fx.Hello, tree)

	ourDir := filepath.Join(t.TempDir(), "cache")
	var stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"--out", ourDir, "--compression", "none",
		"--nar-listing", "--index-debug-info", "--quiet", fx.Hello, tree},
		cli.Env{Getenv: os.Getenv, Stdout: &stderr, Stderr: &stderr})
	if code != 0 {
		t.Fatalf("mkbinarycache: exit %d: %s", code, stderr.String())
	}

	want, got := indexFiles(t, nixDir), indexFiles(t, ourDir)
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(want) != len(fx.Closure)+1+2 {
		t.Errorf("nix copy wrote %d index files, want %d listings and 2 debuginfo entries: %q", len(want), len(fx.Closure)+1, names)
	}
	if !strings.Contains(strings.Join(names, " "), "debuginfo/abcdef0123456789abcdef0123456789abcdef01.debug") {
		t.Errorf("no debuginfo entry from nix copy: %q", names)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("index files of nix copy (-) and ours (+):\n%s", d)
	}
}
