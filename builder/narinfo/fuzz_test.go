package narinfo_test

import (
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// FuzzParse checks that no narinfo crashes the parser, nor the fingerprint
// of what it accepts (go-nix's NarInfo.String panics without a NarHash:
// neither calls it on a parsed narinfo), and that what it accepts has what
// Nix requires. Seeds are narinfos `nix copy` wrote (testdata/seed) and the
// syntax table's cases.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "seed", "*.narinfo"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, c := range syntaxCases {
		f.Add([]byte(c.text))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			return
		}
		if ni.NarHash == nil || ni.NarSize == 0 || ni.URL == "" || ni.Compression == "" {
			t.Fatalf("accepted without a required field: %+v", ni)
		}
		if path.Clean(ni.StorePath) != ni.StorePath || narinfo.CheckBaseName(path.Base(ni.StorePath)) != nil {
			t.Fatalf("accepted StorePath %q", ni.StorePath)
		}
		for _, r := range ni.References {
			if narinfo.CheckBaseName(r) != nil {
				t.Fatalf("accepted reference %q", r)
			}
		}
		_, _ = narinfo.Fingerprint(ni, path.Dir(ni.StorePath))
	})
}
