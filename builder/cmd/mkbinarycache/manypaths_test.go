package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// graphFile writes the legacy graph file (path, no deriver, references)
// of c.
func graphFile(t testing.TB, c closure.Closure) string {
	t.Helper()
	var g strings.Builder
	for _, p := range c {
		fmt.Fprintf(&g, "%s\n\n%d\n", p.StorePath, len(p.References))
		for _, r := range p.References {
			fmt.Fprintln(&g, r)
		}
	}
	return writeTemp(t, "graph", g.String())
}

// manyCache writes the cache of testkit.LibraryTree(n) of a store of its
// own with the binary (--graph --store-dir), with listings, and returns it
// and the tree's root.
func manyCache(t testing.TB, n int) (dir, root string) {
	t.Helper()
	s := testkit.NewStore(t)
	graph := graphFile(t, s.Add(t, testkit.LibraryTree(n)...))
	dir = filepath.Join(t.TempDir(), "cache")
	mkbinarycache(t, "--out", dir, "--graph", graph, "--store-dir", s.Dir, "--nar-listing", "--quiet")
	return dir, s.Path("root")
}
