package testkit_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// The kit's store makes what its paths describe, and a cache of them
// passes its own checks; a temporary file or a missing NAR does not.
func TestKit(t *testing.T) {
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{Name: "lib", Files: map[string]string{"": "a file"}},
		testkit.Path{Name: "app", Files: map[string]string{"share/doc": "doc"}, Executables: map[string]string{"bin/app": "#!"},
			Symlinks: map[string]string{"lib": s.Path("lib")}, Dirs: []string{"empty"}, Refs: []string{"lib", "app"}, Deriver: "app.drv"})
	refs := []string{s.Path("app"), s.Path("lib")}
	sort.Strings(refs)
	if c[1].StorePath != s.Dir+"/"+testkit.HashPartOfName("app")+"-app" || c[1].Deriver != s.Path("app.drv") || !cmp.Equal(c[1].References, refs) {
		t.Errorf("closure %+v", c[1])
	}
	want := map[string]string{".": "drwxr-xr-x", "bin": "drwxr-xr-x", "bin/app": "-rwxr-xr-x\n#!", "empty": "drwxr-xr-x",
		"lib": "symlink -> " + s.Path("lib"), "share": "drwxr-xr-x", "share/doc": "-rw-r--r--\ndoc"}
	if d := cmp.Diff(want, testkit.Tree(t, c[1].StorePath)); d != "" {
		t.Errorf("tree (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"bin/app": want["bin/app"], "share/doc": want["share/doc"]}, testkit.Files(t, c[1].StorePath)); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	if c[0].NarSize != uint64(len(testkit.Nardump(t, c[0].StorePath))) {
		t.Errorf("NarSize %d", c[0].NarSize)
	}

	dir := filepath.Join(t.TempDir(), "cache")
	testkit.WriteCache(t, dir, c, s.Options(compress.Zstd))
	testkit.CheckCache(t, dir)
	nis := testkit.NarInfos(t, dir)
	for _, p := range c {
		testkit.CheckNAR(t, dir, nis[p.StorePath], compress.Zstd, testkit.Nardump(t, p.StorePath))
	}

	// A temporary file and a missing NAR: CheckCache reports both.
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "nar", ".tmp-x"), nil, 0o644))
	testkit.Must(t, os.Remove(filepath.Join(dir, nis[c[0].StorePath].URL)))
	r := &testkit.Recorder{TB: t}
	testkit.CheckCache(r, dir)
	if len(r.Errors) != 2 || !strings.Contains(r.Errors[0], "is missing") || !strings.Contains(r.Errors[1], ".tmp-x") {
		t.Errorf("CheckCache reported %q", r.Errors)
	}
	if tmps := testkit.CheckKilledCache(r, dir); len(tmps) != 1 || len(r.Errors) != 3 {
		t.Errorf("CheckKilledCache: temporary files %q, reported %q", tmps, r.Errors)
	}
}

// LibraryTree's paths refer to their halves, and its root to the even ones.
func TestLibraryTree(t *testing.T) {
	var got []string
	for _, p := range testkit.LibraryTree(5) {
		got = append(got, p.Name+" -> "+strings.Join(p.Refs, " "))
	}
	want := []string{"p0 -> ", "p1 -> ", "p2 -> p1", "p3 -> p1", "p4 -> p2", "root -> p0 p2 p4"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
