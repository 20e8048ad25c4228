package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// manyPaths makes a store directory of its own with n small store paths
// (path i refers to path i/2, as a library tree) and a root referring to
// every even one, and writes the legacy graph file of all of them; it
// returns the store, the graph file and the root. Caches of it come from
// the real binary (--graph --store-dir), in the thousands of paths that no
// Nix build here makes quickly.
func manyPaths(t testing.TB, n int) (s *testkit.Store, graph, root string) {
	t.Helper()
	s = testkit.NewStore(t)
	var paths []testkit.Path
	var rootRefs []string
	for i := range n {
		p := testkit.Path{Name: fmt.Sprintf("p%d", i),
			Files: map[string]string{"share/doc": strings.Repeat(fmt.Sprintf("path %d\n", i), 1+i%50)}}
		if i > 1 {
			p.Refs = []string{fmt.Sprintf("p%d", i/2)}
		}
		if i%2 == 0 {
			rootRefs = append(rootRefs, p.Name)
		}
		paths = append(paths, p)
	}
	paths = append(paths, testkit.Path{Name: "root", Refs: rootRefs})
	return s, graphFile(t, s.Add(t, paths...)), s.Path("root")
}

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

// manyCache writes the cache of manyPaths with the binary, with listings.
func manyCache(t testing.TB, n int) (dir, root string) {
	t.Helper()
	s, graph, root := manyPaths(t, n)
	dir = filepath.Join(t.TempDir(), "cache")
	mkbinarycache(t, "--out", dir, "--graph", graph, "--store-dir", s.Dir, "--nar-listing", "--quiet")
	return dir, root
}
