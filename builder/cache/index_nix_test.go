package cache_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// addDebugTree adds to the store a path with separate debug info and names
// that JSON escaping gets wrong (content-addressed, so the same path each
// run), and returns it.
func addDebugTree(t *testing.T) string {
	t.Helper()
	return testkit.AddToNix(t, testkit.Path{
		Name: "debug-tree",
		Files: map[string]string{
			"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug": "dwarf 1",
			"lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug": "dwarf 2",
			"lib/debug/.build-id/cd/short.debug":                                  "skipped",
			"share/q\"uote\\back\ttab\x01":                                        "",
			"share/é\x7f":                                                         "x",
		},
		Executables: map[string]string{"bin/tool": "#!/bin/sh\n"},
		Symlinks: map[string]string{
			"lib/debug/.build-id/cd/1123456789abcdef0123456789abcdef012345.debug": "../ab/cdef0123456789abcdef0123456789abcdef01.debug",
		},
	})[0]
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
	var c closure.Closure
	for _, p := range append(fx.Closure, tree) {
		c = append(c, closure.Path{StorePath: p})
	}
	testkit.WriteCache(t, ourDir, c, cache.Options{StoreDir: "/nix/store", Compression: compress.None,
		NarListing: true, IndexDebugInfo: true})

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
