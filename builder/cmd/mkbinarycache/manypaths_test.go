package ciloop

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// manyPaths makes a store directory of its own with n small store paths
// (path i refers to path i/2, as a library tree) and a root referring to
// every even one, and writes the legacy graph file of all of them; it
// returns the store directory, the graph file and the root. Caches of it
// come from the real binary (--graph --store-dir), in the thousands of
// paths that no Nix build here makes quickly.
func manyPaths(t testing.TB, n int) (storeDir, graph, root string) {
	t.Helper()
	base := t.TempDir()
	storeDir = filepath.Join(base, "store")
	name := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return storeDir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + s
	}
	var g strings.Builder
	var rootRefs []string
	for i := range n {
		p := name(fmt.Sprintf("p%d", i))
		if err := os.MkdirAll(filepath.Join(p, "share"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "share", "doc"), []byte(strings.Repeat(fmt.Sprintf("path %d\n", i), 1+i%50)), 0o644); err != nil {
			t.Fatal(err)
		}
		var refs []string
		if i > 1 {
			refs = append(refs, name(fmt.Sprintf("p%d", i/2)))
		}
		if i%2 == 0 {
			rootRefs = append(rootRefs, p)
		}
		fmt.Fprintf(&g, "%s\n\n%d\n", p, len(refs))
		for _, r := range refs {
			fmt.Fprintln(&g, r)
		}
	}
	root = name("root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&g, "%s\n\n%d\n%s\n", root, len(rootRefs), strings.Join(rootRefs, "\n"))
	graph = filepath.Join(base, "graph")
	if err := os.WriteFile(graph, []byte(g.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return storeDir, graph, root
}

// manyCache writes the cache of manyPaths with the binary, with listings.
func manyCache(t testing.TB, n int) (dir, root string) {
	t.Helper()
	storeDir, graph, root := manyPaths(t, n)
	dir = filepath.Join(t.TempDir(), "cache")
	mustMBC(t, "--out", dir, "--graph", graph, "--store-dir", storeDir, "--nar-listing", "--quiet")
	return dir, root
}
