package cachecopy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

const debugFile = "lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"

// source writes a cache of app (app -> lib -> libc, app.drv -> lib.drv)
// and other, with listings and a debuginfo entry, and signs app by hand
// (a Sig line copy must keep).
func source(t *testing.T) (*testkit.Store, string) {
	s := testkit.NewStore(t)
	dir := filepath.Join(t.TempDir(), "src")
	c := s.Add(t,
		testkit.Path{Name: "libc", Files: map[string]string{"lib/libc.so": "libc"}},
		testkit.Path{Name: "lib", Files: map[string]string{"lib/lib.so": "lib"}, Refs: []string{"libc"}, Deriver: "lib.drv"},
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app", debugFile: "debug"}, Refs: []string{"lib", "libc"}, Deriver: "app.drv"},
		testkit.Path{Name: "lib.drv", Files: map[string]string{"drv": "lib"}},
		testkit.Path{Name: "app.drv", Files: map[string]string{"drv": "app"}, Refs: []string{"lib.drv"}},
		testkit.Path{Name: "other", Files: map[string]string{"other": "other"}},
	)
	o := s.Options(compress.Zstd)
	o.NarListing, o.IndexDebugInfo, o.LockWait = true, true, -1
	testkit.WriteCache(t, dir, c, o)
	f := filepath.Join(dir, cachedir.NarInfoName(s.Path("app")))
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(data, "Sig: test-1:"+strings.Repeat("A", 86)+"==\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func run(t *testing.T, o Options) Stats {
	t.Helper()
	o.LockWait = -1
	st, err := Copy(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// subset returns the files of src that dst should have after copying
// paths: nix-cache-info, their narinfos, NARs, listings, debuginfo.
func subset(t *testing.T, src string, paths ...string) map[string]string {
	t.Helper()
	g, err := cachegraph.Load(context.Background(), testkit.OpenCache(t, src), 0)
	if err != nil {
		t.Fatal(err)
	}
	all := testkit.Files(t, src)
	want := map[string]string{cachedir.InfoFile: all[cachedir.InfoFile]}
	urls := map[string]bool{}
	for _, p := range paths {
		e := g.Paths[p]
		h := narinfo.HashPart(p)
		want[h+".narinfo"] = all[h+".narinfo"]
		want[e.Info.URL] = all[e.Info.URL]
		want[h+".ls"] = all[h+".ls"]
		urls[e.Info.URL] = true
	}
	entries, _, err := cachegraph.LoadDebugInfo(testkit.OpenCache(t, src))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if urls[e.Archive] {
			want["debuginfo/"+e.Name] = all["debuginfo/"+e.Name]
		}
	}
	return want
}

func TestCopy(t *testing.T) {
	s, src := source(t)
	before := testkit.Files(t, src)
	dst := filepath.Join(t.TempDir(), "dst")
	app := s.Path("app")
	st := run(t, Options{Src: src, Dst: dst, Paths: []string{app}, Durable: true})
	if st.Copied != 3 || st.Skipped != 0 {
		t.Errorf("stats %+v, want 3 copied", st)
	}
	want := subset(t, src, app, s.Path("lib"), s.Path("libc"))
	if d := cmp.Diff(want, testkit.Files(t, dst)); d != "" {
		t.Errorf("destination (-want +got):\n%s", d)
	}
	// Again with the build closure: only the derivations are new.
	st = run(t, Options{Src: src, Dst: dst, Paths: []string{app}, BuildClosure: true, Durable: true})
	if st.Copied != 2 || st.Skipped != 3 {
		t.Errorf("stats %+v, want 2 copied, 3 skipped", st)
	}
	// All of it.
	st = run(t, Options{Src: src, Dst: dst})
	if st.Copied != 1 || st.Skipped != 5 {
		t.Errorf("stats %+v, want 1 copied, 5 skipped", st)
	}
	all := testkit.Files(t, src)
	if d := cmp.Diff(all, testkit.Files(t, dst)); d != "" {
		t.Errorf("full copy (-src +dst):\n%s", d)
	}
	if d := cmp.Diff(before, all); d != "" {
		t.Errorf("the source changed:\n%s", d)
	}
	testkit.CheckCache(t, dst)
}

func TestCopyBadInput(t *testing.T) {
	s, src := source(t)
	ctx := context.Background()
	dst := filepath.Join(t.TempDir(), "dst")

	if _, err := Copy(ctx, Options{Src: src, Dst: src + "/."}, nil); !errors.Is(err, ErrSameCache) {
		t.Errorf("same cache: %v", err)
	}
	if _, err := Copy(ctx, Options{Src: t.TempDir(), Dst: dst}, nil); !errors.Is(err, cachedir.ErrNotCache) {
		t.Errorf("source not a cache: %v", err)
	}
	unknown := s.Path("unknown")
	if _, err := Copy(ctx, Options{Src: src, Dst: dst, Paths: []string{unknown}}, nil); err == nil || !strings.Contains(err.Error(), unknown) {
		t.Errorf("unknown path: %v", err)
	}

	// Another store directory.
	other := t.TempDir()
	testkit.InitCache(t, other, cachedir.Info{StoreDir: "/opt/store"})
	if _, err := Copy(ctx, Options{Src: src, Dst: other}, nil); err == nil || !strings.Contains(err.Error(), "/opt/store") {
		t.Errorf("store dir mismatch: %v", err)
	}

	// A corrupt NAR is an error naming it, and its narinfo is not copied.
	g, err := cachegraph.Load(ctx, testkit.OpenCache(t, src), 0)
	if err != nil {
		t.Fatal(err)
	}
	libc := s.Path("libc")
	nar := filepath.Join(src, g.Paths[libc].Info.URL)
	data, err := os.ReadFile(nar)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(nar, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var reported string
	_, err = Copy(ctx, Options{Src: src, Dst: dst, Paths: []string{libc}}, func(e Event) {
		if e.Kind == Invalid {
			reported += e.Msg
		}
	})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(reported, nar) {
		t.Errorf("corrupt NAR: %v, reported %q; want ErrInvalid, and %s named", err, reported, nar)
	}
	if _, err := os.Stat(filepath.Join(dst, cachedir.NarInfoName(libc))); err == nil {
		t.Errorf("the narinfo of a corrupt NAR was copied")
	}

	// A missing reference.
	if err := os.Remove(filepath.Join(src, cachedir.NarInfoName(s.Path("lib")))); err != nil {
		t.Fatal(err)
	}
	_, err = Copy(ctx, Options{Src: src, Dst: filepath.Join(t.TempDir(), "d")}, nil)
	if err == nil || !strings.Contains(err.Error(), s.Path("lib")) {
		t.Errorf("missing reference: %v, want an error naming it", err)
	}
}

// A read-only source (here: one whose lock file cannot be created and
// whose stale temporary files cannot be removed) is copied from.
func TestCopyReadOnlySource(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions: a stale temp file shows the source is not cleaned instead.
		s, src := source(t)
		stale := filepath.Join(src, "nar", cachedir.TmpPrefix+"killed")
		if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, Options{Src: src, Dst: filepath.Join(t.TempDir(), "dst"), Paths: []string{s.Path("app")}})
		if _, err := os.Stat(stale); err != nil {
			t.Errorf("copy changed the source: %v", err)
		}
		return
	}
	s, src := source(t)
	if err := os.Chmod(src, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(src, 0o755)
	run(t, Options{Src: src, Dst: filepath.Join(t.TempDir(), "dst"), Paths: []string{s.Path("app")}})
}

// Invalid entries of the source are skipped and reported, and the copy
// fails at the end; what is valid is copied, nothing through a symlink.
func TestCopyHostileSource(t *testing.T) {
	s, src := source(t)
	o := testkit.NewOutside(t, "secret", "narinfo")
	other := s.Path("other")
	ls := filepath.Join(src, cachedir.ListingName(other))
	testkit.Must(t, os.Remove(ls))
	testkit.Must(t, os.Symlink(o.Path("secret"), ls))
	testkit.Must(t, os.Symlink(o.Path("narinfo"), filepath.Join(src, "11111111111111111111111111111111.narinfo")))
	testkit.Must(t, os.WriteFile(filepath.Join(src, "00000000000000000000000000000000.narinfo"), []byte("garbage\n"), 0o644))
	testkit.Must(t, os.Symlink(o.Path("secret"), filepath.Join(src, "debuginfo", "0123456789abcdef0123456789abcdef01234567.debug")))
	dst := filepath.Join(t.TempDir(), "dst")

	var invalid []string
	st, err := Copy(context.Background(), Options{Src: src, Dst: dst, LockWait: -1}, func(e Event) {
		testkit.NoSentinel(t, e.Path+e.Msg)
		if e.Kind == Invalid {
			rel, _ := filepath.Rel(src, e.Path)
			invalid = append(invalid, rel+": "+e.Msg)
		}
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("copy of a hostile cache: %v, want ErrInvalid", err)
	}
	if err != nil {
		testkit.NoSentinel(t, err.Error())
	}
	slices.Sort(invalid)
	want := []string{
		"00000000000000000000000000000000.narinfo: does not parse: *",
		"11111111111111111111111111111111.narinfo: a symbolic link (not followed)",
		cachedir.ListingName(other) + ": a symbolic link (not followed)",
		"debuginfo/0123456789abcdef0123456789abcdef01234567.debug: a symbolic link (not followed)",
	}
	slices.Sort(want)
	if len(want) != len(invalid) {
		t.Errorf("invalid entries %q, want %q", invalid, want)
	} else {
		for i := range want {
			if ok, _ := filepath.Match(want[i], invalid[i]); !ok {
				t.Errorf("invalid entry %q, want %q", invalid[i], want[i])
			}
		}
	}
	if st.Invalid != 4 || st.Copied != 6 {
		t.Errorf("stats %+v", st)
	}
	for rel, data := range testkit.Tree(t, dst) {
		testkit.NoSentinel(t, rel+data)
	}
	if _, err := os.Lstat(filepath.Join(dst, cachedir.ListingName(other))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlinked listing was published: %v", err)
	}
	testkit.CheckCache(t, dst)
}

// A NAR the destination has with the right size but other bytes is
// replaced, not trusted.
func TestCopyReplacesCorruptNAR(t *testing.T) {
	s, src := source(t)
	dst := filepath.Join(t.TempDir(), "dst")
	app := s.Path("app")
	run(t, Options{Src: src, Dst: dst, Paths: []string{app}})
	ni := testkit.NarInfos(t, dst)[app]
	nar := filepath.Join(dst, ni.URL)
	data, err := os.ReadFile(nar)
	testkit.Must(t, err)
	bad := slices.Clone(data)
	bad[len(bad)/2] ^= 0xff
	testkit.Must(t, os.WriteFile(nar, bad, 0o644))
	testkit.Must(t, os.Remove(filepath.Join(dst, cachedir.NarInfoName(app))))
	run(t, Options{Src: src, Dst: dst, Paths: []string{app}})
	if got, _ := os.ReadFile(nar); string(got) != string(data) {
		t.Errorf("the corrupt NAR in the destination was kept")
	}
	testkit.CheckCache(t, dst)
}

// The destination may be neither the source nor inside it, nor be
// written through a symlink.
func TestCopyDestination(t *testing.T) {
	s, src := source(t)
	before := testkit.Tree(t, src)
	for _, dst := range []string{src, filepath.Join(src, "nar"), filepath.Join(src, "nar", "new"), filepath.Join(src, "debuginfo")} {
		if _, err := Copy(context.Background(), Options{Src: src, Dst: dst, LockWait: -1}, nil); !errors.Is(err, ErrSameCache) {
			t.Errorf("copy into %s: %v, want ErrSameCache", dst, err)
		}
	}
	if d := cmp.Diff(before, testkit.Tree(t, src)); d != "" {
		t.Errorf("the source changed:\n%s", d)
	}

	o := testkit.NewOutside(t, "secret")
	dst := filepath.Join(t.TempDir(), "dst")
	testkit.Must(t, os.Mkdir(dst, 0o755))
	testkit.Must(t, os.Symlink(o.Dir, filepath.Join(dst, "nar")))
	_, err := Copy(context.Background(), Options{Src: src, Dst: dst, Paths: []string{s.Path("app")}, LockWait: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dst, "nar")+": a symbolic link") {
		t.Errorf("copy into a destination with a symlinked nar/: %v, want an error naming it", err)
	}
	if _, err := os.Lstat(filepath.Join(dst, cachedir.NarInfoName(s.Path("app")))); err == nil {
		t.Errorf("a narinfo was published")
	}
}

// A path whose NAR is not what its narinfo says (here, not a regular
// file) is skipped with its referrers; the rest is copied, and the copy
// fails at the end.
func TestCopySkipsBadNAR(t *testing.T) {
	s, src := source(t)
	lib := testkit.NarInfos(t, src)[s.Path("lib")]
	nar := filepath.Join(src, lib.URL)
	testkit.Must(t, os.Remove(nar))
	testkit.Must(t, syscall.Mkfifo(nar, 0o644))
	dst := filepath.Join(t.TempDir(), "dst")
	var invalid, warned []string
	_, err := Copy(context.Background(), Options{Src: src, Dst: dst, LockWait: -1}, func(e Event) {
		switch e.Kind {
		case Invalid:
			invalid = append(invalid, e.Path+": "+e.Msg)
		case Warning:
			warned = append(warned, e.Path)
		}
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("copy: %v, want ErrInvalid", err)
	}
	if len(invalid) != 1 || !strings.Contains(invalid[0], nar+": not a regular file but a named pipe") {
		t.Errorf("invalid %q, want lib's NAR named", invalid)
	}
	if d := cmp.Diff([]string{s.Path("app")}, warned); d != "" {
		t.Errorf("referrers skipped (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"app.drv", "lib.drv", "libc", "other"}, copied(t, dst)); d != "" {
		t.Errorf("copied (-want +got):\n%s", d)
	}
	testkit.CheckCache(t, dst)
}

// A reference whose narinfo is invalid takes its referrers out of the
// copy, and nothing else.
func TestCopySkipsReferrersOfInvalid(t *testing.T) {
	s, src := source(t)
	o := testkit.NewOutside(t, "narinfo")
	lib := filepath.Join(src, cachedir.NarInfoName(s.Path("lib")))
	testkit.Must(t, os.Remove(lib))
	testkit.Must(t, os.Symlink(o.Path("narinfo"), lib))
	dst := filepath.Join(t.TempDir(), "dst")
	var warned []string
	_, err := Copy(context.Background(), Options{Src: src, Dst: dst, LockWait: -1}, func(e Event) {
		if e.Kind == Warning {
			warned = append(warned, e.Path)
		}
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("copy: %v, want ErrInvalid", err)
	}
	if d := cmp.Diff([]string{s.Path("app")}, warned); d != "" {
		t.Errorf("referrers skipped (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"app.drv", "lib.drv", "libc", "other"}, copied(t, dst)); d != "" {
		t.Errorf("copied (-want +got):\n%s", d)
	}
}

// copied are the names of the store paths whose narinfos dst has, sorted.
func copied(t *testing.T, dst string) []string {
	var got []string
	for p := range testkit.NarInfos(t, dst) {
		got = append(got, filepath.Base(p)[33:])
	}
	slices.Sort(got)
	return got
}
