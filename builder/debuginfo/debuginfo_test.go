package debuginfo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	b := filepath.Join(dir, "lib/debug/.build-id")
	files := map[string]string{
		"ab/cdef0123456789abcdef0123456789abcdef01.debug": "dbg", // indexed
		"ab/short.debug": "x", // name too short
		"cd/0123456789abcdef0123456789abcdef012345.debug":  "dbg3", // indexed
		"AB/0123456789abcdef0123456789abcdef012345.debug":  "x",    // upper-case dir
		"ef/0123456789ABCDEF0123456789abcdef012345.debug":  "x",    // upper-case name
		"ef/0123456789abcdef0123456789abcdef012345.dbg":    "x",    // wrong suffix
		"abc/0123456789abcdef0123456789abcdef012345.debug": "x",    // dir name too long
	}
	for n, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(b, n)), 0o755)
		if err := os.WriteFile(filepath.Join(b, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(b, "ab/1123456789abcdef0123456789abcdef012345.debug"), 0o755)                                               // a directory
	os.MkdirAll(filepath.Join(b, "zz"), 0o755)                                                                                            // not hex
	os.Symlink("../ab/cdef0123456789abcdef0123456789abcdef01.debug", filepath.Join(b, "cd/1123456789abcdef0123456789abcdef012345.debug")) // a symlink
	os.Symlink("ab", filepath.Join(b, "12"))                                                                                              // a symlinked dir

	var nar bytes.Buffer
	if err := nardump.Dump(&nar, dir); err != nil {
		t.Fatal(err)
	}
	root, err := listing.Read(&nar)
	if err != nil {
		t.Fatal(err)
	}
	got := Find(root)
	// What `nix copy ?index-debug-info=1` (Nix 2.8) wrote for such a tree.
	url := "nar/1dsa1cbifn6jwpzsga89lff9xf8r92hpl6fwbxn9p9ab9pjffyk7.nar"
	want := []File{
		{"abcdef0123456789abcdef0123456789abcdef01.debug", "lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"},
		{"cd0123456789abcdef0123456789abcdef012345.debug", "lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	wantJSON := `{"archive":"../nar/1dsa1cbifn6jwpzsga89lff9xf8r92hpl6fwbxn9p9ab9pjffyk7.nar","member":"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"}`
	if d := cmp.Diff(wantJSON, string(JSON(got[0], url))); d != "" {
		t.Errorf("JSON (-nix +ours):\n%s", d)
	}
}

func TestFindNothing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "lib"), []byte("a file, not a dir"), 0o644)
	var nar bytes.Buffer
	if err := nardump.Dump(&nar, dir); err != nil {
		t.Fatal(err)
	}
	root, err := listing.Read(&nar)
	if err != nil {
		t.Fatal(err)
	}
	if got := Find(root); got != nil {
		t.Errorf("Find = %v, want nothing", got)
	}
}
