package narinfo_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// FuzzParse checks that no narinfo crashes the tolerant parser, nor
// the fingerprint of what it accepts
// (go-nix's NarInfo.String panics without a NarHash: neither calls it on a
// parsed narinfo). Seeds are narinfos `nix copy` wrote.
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
	f.Add([]byte("StorePath: /nix/store/f8d1h7s7d4pw4g3ms3awakf6n56sbjmq-libgreet\nReferences:\nSig: cache.example.org-1:AAAA\nUnknownKey: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			return
		}
		_, _ = narinfo.Fingerprint(ni, "/nix/store")
	})
}
