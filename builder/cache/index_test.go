package cache_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

func TestNarListingAndDebugInfo(t *testing.T) {
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{Name: "app-debug", Files: map[string]string{
		"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug": "dwarf",
		"lib/debug/.build-id/ab/not-a-build-id.debug":                         "x",
	}}, testkit.Path{Name: "plain", Files: map[string]string{"": "a single file"}})
	withDebug, plain := c[0].StorePath, c[1].StorePath
	dir := filepath.Join(t.TempDir(), "cache")
	// A debuginfo entry already there is left alone, as Nix does.
	testkit.Must(t, os.MkdirAll(filepath.Join(dir, "debuginfo"), 0o755))
	const kept = `{"archive":"../nar/kept.nar","member":"lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug"}`
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "debuginfo", "cd0123456789abcdef0123456789abcdef012345.debug"), []byte(kept), 0o644))

	o := s.Options(compress.XZ)
	o.NarListing, o.IndexDebugInfo = true, true
	// No NAR hashes: the writer takes what it dumps.
	testkit.WriteCache(t, dir, closure.Closure{{StorePath: withDebug}, {StorePath: plain}}, o)

	for _, p := range []string{withDebug, plain} {
		root, err := listing.Read(bytes.NewReader(testkit.Nardump(t, p)))
		testkit.Must(t, err)
		got, err := os.ReadFile(filepath.Join(dir, cachedir.ListingName(p)))
		testkit.Must(t, err)
		if d := cmp.Diff(string(listing.JSON(root)), string(got)); d != "" {
			t.Errorf("%s listing (-want +got):\n%s", p, d)
		}
	}

	url := testkit.NarInfos(t, dir)[withDebug].URL
	entries, _ := os.ReadDir(filepath.Join(dir, "debuginfo"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"abcdef0123456789abcdef0123456789abcdef01.debug", "cd0123456789abcdef0123456789abcdef012345.debug"}, names); d != "" {
		t.Errorf("debuginfo entries (-want +got):\n%s", d)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "debuginfo", "abcdef0123456789abcdef0123456789abcdef01.debug"))
	want := `{"archive":"../` + url + `","member":"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"}`
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("debuginfo entry (-want +got):\n%s", d)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "debuginfo", "cd0123456789abcdef0123456789abcdef012345.debug")); string(got) != kept {
		t.Errorf("existing debuginfo entry overwritten: %s", got)
	}

	// The cache checks out, listings included; the kept entry's NAR is not there.
	if p := testkit.Problems(t, verify.Options{Dir: dir}); len(p) != 1 || !strings.Contains(p[0], "archive ../nar/kept.nar is missing") {
		t.Errorf("verify: %q", p)
	}
}

func TestNarListingDumpError(t *testing.T) {
	s := testkit.NewStore(t)
	dir := t.TempDir()
	o := s.Options(compress.Zstd)
	o.NarListing = true
	missing := s.Path("missing")
	if _, err := write(closure.Closure{{StorePath: missing}}, dir, o); err == nil {
		t.Fatal("a missing store path was written")
	}
	if _, err := os.Stat(filepath.Join(dir, cachedir.ListingName(missing))); err == nil {
		t.Errorf("listing written for a failed path")
	}
}
