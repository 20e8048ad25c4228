package attrs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/attrs"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// FuzzParse checks that no structured attrs file crashes the parser and that
// an accepted one has a closure of valid store paths with NAR hashes. The
// seed has the shape Nix 2.8 writes (testdata/seed/attrs.json).
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "seed", "attrs.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"closureAttr":"c","c":[]}`))
	f.Add([]byte(`{"exportReferencesGraph":{"a":[],"b":[]},"a":[],"b":null}`))
	v := closure.Validator{StoreDir: "/nix/store"}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := attrs.Parse(data, v, "attrs.json")
		if err != nil {
			return
		}
		for _, p := range a.Closure {
			if err := v.CheckPath(p.StorePath); err != nil {
				t.Fatalf("accepted an invalid path: %v", err)
			}
			if p.NarHash == nil {
				t.Fatalf("%s: accepted without a NAR hash", p.StorePath)
			}
		}
		for p, d := range a.Derivers {
			if v.CheckPath(p) != nil || v.CheckPath(d) != nil {
				t.Fatalf("accepted deriver %q -> %q", p, d)
			}
		}
	})
}
