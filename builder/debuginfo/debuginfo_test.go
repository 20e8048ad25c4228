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

// Parse reads what JSON writes, and rejects an entry whose archive is not
// a NAR of the cache or whose member is not the entry's debug file.
func TestParse(t *testing.T) {
	f, ok := FileAt("ab", "cdef0123456789abcdef0123456789abcdef01.debug")
	if !ok {
		t.Fatal("FileAt")
	}
	url := "nar/1ds4yba1pmvqxg3rbqm9rgw9mhbgpzj9qi5zkq3zgxjcc7crafv6.nar.zst"
	got, gotURL, err := Parse(f.Key, JSON(f, url))
	if err != nil || got != f || gotURL != url {
		t.Errorf("Parse(JSON) = %+v, %q, %v; want %+v, %q", got, gotURL, err, f, url)
	}
	member := `"member":"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"`
	for _, bad := range []string{
		"SENTINEL-debuginfo",
		`{"archive":"../nar/x.nar"}`,
		`{"archive":"../nix-cache-info",` + member + `}`,
		`{"archive":"../../etc/passwd",` + member + `}`,
		`{"archive":"nar/x.nar",` + member + `}`,
		`{"archive":"../nar/x.nar","member":"etc/passwd"}`,
		`{"archive":"../nar/x.nar","member":"lib/debug/.build-id/cd/ef0123456789abcdef0123456789abcdef0123.debug"}`,
		`{"archive":"../nar/x.nar",` + member + `,"extra":1}`,
		`{"archive":"../nar/x.nar",` + member + `} {}`,
	} {
		if _, _, err := Parse(f.Key, []byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		} else if bytes.Contains([]byte(err.Error()), []byte("SENTINEL")) {
			t.Errorf("error %v carries the entry's content", err)
		}
	}
}
