package closure_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// The fuzz targets check that no input crashes a parser and that whatever
// a parser accepts is a well-formed closure: valid, sorted, no duplicates,
// closed under references. Seeds are real inputs captured from Nix 2.8
// (testdata/seed): `nix-store --dump-db`, a legacy exportReferencesGraph
// file and `nix path-info --json --recursive`.

var fuzzV = closure.Validator{StoreDir: "/nix/store"}

func addSeeds(f *testing.F, names ...string) {
	f.Helper()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join("testdata", "seed", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func checkClosure(t *testing.T, c closure.Closure, needHashes bool) {
	t.Helper()
	if !sort.SliceIsSorted(c, func(i, j int) bool { return c[i].StorePath < c[j].StorePath }) {
		t.Fatalf("closure not sorted")
	}
	in := map[string]bool{}
	for i, p := range c {
		if err := fuzzV.CheckPath(p.StorePath); err != nil {
			t.Fatalf("accepted an invalid path: %v", err)
		}
		if i > 0 && c[i-1].StorePath == p.StorePath {
			t.Fatalf("accepted %s twice", p.StorePath)
		}
		if needHashes && p.NarHash == nil {
			t.Fatalf("%s: accepted without a NAR hash", p.StorePath)
		}
		in[p.StorePath] = true
	}
	for _, p := range c {
		for _, r := range p.References {
			if !in[r] {
				t.Fatalf("%s: reference %s outside the closure", p.StorePath, r)
			}
		}
	}
}

func FuzzParseGraph(f *testing.F) {
	addSeeds(f, "graph")
	f.Add([]byte(""))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := closure.ParseGraph(bytes.NewReader(data), fuzzV, "graph")
		if err == nil {
			checkClosure(t, c, false)
		}
	})
}

func FuzzParseRegistration(f *testing.F) {
	addSeeds(f, "registration")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := closure.ParseRegistration(bytes.NewReader(data), fuzzV, "registration")
		if err == nil {
			checkClosure(t, c, true)
		}
	})
}

func FuzzParsePathInfo(f *testing.F) {
	addSeeds(f, "pathinfo.json")
	// Newer Nix: an object keyed by store path, base-name references.
	f.Add([]byte(`{"/nix/store/f8d1h7s7d4pw4g3ms3awakf6n56sbjmq-libgreet":{"narHash":"sha256-iJXYzHhRxVs/rbcgmx/JdWyfFEDHbxRUBYkneJXdqRk=","narSize":456,"references":[],"deriver":"6idpvj7x1x4yya9hcp9kib59iabf87xv-libgreet.drv"}}`))
	f.Add([]byte(`{"/nix/store/f8d1h7s7d4pw4g3ms3awakf6n56sbjmq-libgreet":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := closure.ParsePathInfo(data, fuzzV, "path-info")
		if err == nil {
			checkClosure(t, c, true)
		}
	})
}
