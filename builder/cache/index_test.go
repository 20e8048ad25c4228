package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

func TestNarListingAndDebugInfo(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	withDebug := filepath.Join(store, "11111111111111111111111111111111-app-debug")
	plain := filepath.Join(store, "22222222222222222222222222222222-plain")
	for name, content := range map[string]string{
		withDebug + "/lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug": "dwarf",
		withDebug + "/lib/debug/.build-id/ab/not-a-build-id.debug":                         "x",
		plain: "a single file",
	} {
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "cache")
	// A debuginfo entry already there is left alone, as Nix does.
	os.MkdirAll(filepath.Join(dir, "debuginfo"), 0o755)
	const kept = `{"archive":"../nar/kept.nar","member":"lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug"}`
	os.WriteFile(filepath.Join(dir, "debuginfo", "cd0123456789abcdef0123456789abcdef012345.debug"), []byte(kept), 0o644)

	o := Options{StoreDir: store, Compression: compress.XZ, Level: compress.DefaultLevel,
		NarListing: true, IndexDebugInfo: true}
	if _, err := write(closure.Closure{{StorePath: withDebug}, {StorePath: plain}}, dir, o); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{withDebug, plain} {
		var nar bytes.Buffer
		if err := nardump.Dump(&nar, p); err != nil {
			t.Fatal(err)
		}
		root, err := listing.Read(&nar)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, narinfo.HashPart(p)+".ls"))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(listing.JSON(root)), string(got)); d != "" {
			t.Errorf("%s listing (-want +got):\n%s", p, d)
		}
	}

	ni, err := os.ReadFile(cachedir.NarInfoPath(dir, withDebug))
	if err != nil {
		t.Fatal(err)
	}
	url := ""
	for _, l := range strings.Split(string(ni), "\n") {
		if v, ok := strings.CutPrefix(l, "URL: "); ok {
			url = v
		}
	}
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
	var problems []string
	if _, err := verify.Cache(context.Background(), verify.Options{Dir: dir}, func(p verify.Problem) {
		problems = append(problems, p.String())
	}); err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "archive ../nar/kept.nar is missing") {
		t.Errorf("verify: %q", problems)
	}
}

func TestNarListingDumpError(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(store, 0o755)
	dir := t.TempDir()
	o := Options{StoreDir: store, Compression: compress.Zstd, Level: compress.DefaultLevel, NarListing: true}
	missing := filepath.Join(store, "11111111111111111111111111111111-missing")
	if _, err := write(closure.Closure{{StorePath: missing}}, dir, o); err == nil {
		t.Fatal("a missing store path was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "11111111111111111111111111111111.ls")); err == nil {
		t.Errorf("listing written for a failed path")
	}
}
