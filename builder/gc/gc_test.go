package gc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

const (
	sharedDebug = "lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug"
	junkDebug   = "lib/debug/.build-id/12/3456789abcdef0123456789abcdef012345678.debug"
)

// world is a cache of an app with its runtime closure (app, lib, libc), a
// build-time-only tool, the derivations of all four, and junk that shares
// a debug file with app; junk came first, so the shared build ID's
// debuginfo entry points at junk's NAR.
func world(t *testing.T) (*testkit.Store, string) {
	s := testkit.NewStore(t)
	dir := filepath.Join(t.TempDir(), "cache")
	junk := s.Add(t,
		testkit.Path{Name: "libc", Files: map[string]string{"lib/libc.so": "libc"}, Deriver: "libc.drv"},
		testkit.Path{Name: "junk", Files: map[string]string{"bin/junk": "junk", sharedDebug: "debug", junkDebug: "junk debug"}, Refs: []string{"libc"}, Deriver: "junk.drv"},
		testkit.Path{Name: "junk.drv", Files: map[string]string{"drv": "junk"}, Refs: []string{"libc.drv"}},
		testkit.Path{Name: "libc.drv", Files: map[string]string{"drv": "libc"}},
	)
	testkit.WriteCache(t, dir, junk, options(s))
	app := s.Add(t,
		testkit.Path{Name: "lib", Files: map[string]string{"lib/lib.so": "lib"}, Refs: []string{"libc"}, Deriver: "lib.drv"},
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app", sharedDebug: "debug"}, Refs: []string{"app", "lib", "libc"}, Deriver: "app.drv"},
		testkit.Path{Name: "tool", Files: map[string]string{"bin/tool": "tool"}, Refs: []string{"libc"}, Deriver: "tool.drv"},
		testkit.Path{Name: "tool.drv", Files: map[string]string{"drv": "tool"}, Refs: []string{"libc.drv"}},
		testkit.Path{Name: "lib.drv", Files: map[string]string{"drv": "lib"}, Refs: []string{"libc.drv"}},
		testkit.Path{Name: "app.drv", Files: map[string]string{"drv": "app"}, Refs: []string{"lib.drv", "tool.drv", "libc.drv"}},
	)
	testkit.WriteCache(t, dir, append(app, junk...), options(s))
	return s, dir
}

// options are the writer's options for the caches here: zstd, listings
// and the debug info index, not durable.
func options(s *testkit.Store) cache.Options {
	o := s.Options(compress.Zstd)
	o.NarListing, o.IndexDebugInfo, o.LockWait = true, true, -1
	return o
}

// names are the name parts of store paths.
func names(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = strings.SplitN(filepath.Base(p), "-", 2)[1]
	}
	return out
}

func storePaths(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for p := range testkit.NarInfos(t, dir) {
		out = append(out, p)
	}
	return out
}

func collect(t *testing.T, o Options) (Stats, []Event) {
	t.Helper()
	var events []Event
	st, err := Collect(context.Background(), o, func(e Event) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	return st, events
}

// checkClean fails unless the cache is whole (testkit.CheckCache) and
// nar/ and the listings hold exactly what the narinfos left name.
func checkClean(t *testing.T, dir string) {
	t.Helper()
	testkit.CheckCache(t, dir)
	g, err := cachegraph.Load(context.Background(), testkit.OpenCache(t, dir), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for p, e := range g.Paths {
		want[e.Info.URL] = true
		want[narinfo.HashPart(p)+".ls"] = true
	}
	for f := range testkit.Files(t, dir) {
		if strings.HasPrefix(f, "nar/") || strings.HasSuffix(f, ".ls") {
			if !want[f] {
				t.Errorf("%s left behind", f)
			}
		}
	}
}

func TestCollect(t *testing.T) {
	s, dir := world(t)
	app := s.Path("app")
	before := testkit.Files(t, dir)

	// A dry run reports what a real one removes, and removes nothing.
	dry, dryEvents := collect(t, Options{Dir: dir, Keep: []string{app}, DryRun: true, Durable: true, LockWait: -1})
	if d := cmp.Diff(before, testkit.Files(t, dir)); d != "" {
		t.Fatalf("dry run changed the cache (-before +after):\n%s", d)
	}
	st, events := collect(t, Options{Dir: dir, Keep: []string{app}, Durable: true, LockWait: -1})
	if d := cmp.Diff(dryEvents, events); d != "" {
		t.Errorf("dry run events differ (-dry +real):\n%s", d)
	}
	dry.Elapsed, st.Elapsed, dry.Syncs = 0, 0, st.Syncs
	if dry != st {
		t.Errorf("dry run stats %+v, real %+v", dry, st)
	}
	if d := cmp.Diff([]string{"app", "lib", "libc"}, sortedPaths(names(storePaths(t, dir)))); d != "" {
		t.Errorf("kept (-want +got):\n%s", d)
	}
	var removed []string
	for _, e := range events {
		if e.Kind == Removed {
			removed = append(removed, e.Path)
		}
	}
	// Referrers before their references.
	rn := names(removed)
	for _, pair := range [][2]string{{"app.drv", "lib.drv"}, {"app.drv", "tool.drv"}, {"tool.drv", "libc.drv"}, {"junk.drv", "libc.drv"}} {
		if slices.Index(rn, pair[0]) > slices.Index(rn, pair[1]) {
			t.Errorf("%s removed after %s: %q", pair[0], pair[1], rn)
		}
	}
	if st.Kept != 3 || st.Paths != 7 || st.Syncs != 1 {
		t.Errorf("stats %+v, want 3 kept, 7 removed, 1 syncfs", st)
	}
	// The shared build ID now points at app's NAR; junk's own is gone.
	g, err := cachegraph.Load(context.Background(), testkit.OpenCache(t, dir), 0)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := cachegraph.LoadDebugInfo(testkit.OpenCache(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	want := []cachegraph.DebugEntry{{Name: "abcdef0123456789abcdef0123456789abcdef01.debug", Archive: g.Paths[app].Info.URL, Member: sharedDebug}}
	if d := cmp.Diff(want, entries, cmpIgnoreSize); d != "" {
		t.Errorf("debuginfo (-want +got):\n%s", d)
	}
	checkClean(t, dir)

	// Collecting again removes nothing.
	st, _ = collect(t, Options{Dir: dir, Keep: []string{app}, LockWait: -1})
	if st.Paths != 0 || st.Files != 0 {
		t.Errorf("second gc removed %+v", st)
	}
}

// cmpIgnoreSize compares entries by what they say, not by their bytes.
var cmpIgnoreSize = cmp.Comparer(func(a, b cachegraph.DebugEntry) bool {
	return a.Name == b.Name && a.Archive == b.Archive && a.Member == b.Member
})

func sortedPaths(p []string) []string {
	p = slices.Clone(p)
	sort.Strings(p)
	return p
}

func TestCollectBuildClosure(t *testing.T) {
	s, dir := world(t)
	collect(t, Options{Dir: dir, Keep: []string{s.Path("app")}, BuildClosure: true, LockWait: -1})
	got := names(storePaths(t, dir))
	sort.Strings(got)
	want := []string{"app", "app.drv", "lib", "lib.drv", "libc", "libc.drv", "tool", "tool.drv"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("kept (-want +got):\n%s", d)
	}
	checkClean(t, dir)
}

func TestCollectBadInput(t *testing.T) {
	s, dir := world(t)
	before := testkit.Files(t, dir)
	_, err := Collect(context.Background(), Options{Dir: dir, Keep: []string{s.Path("app"), s.Path("unknown")}, LockWait: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), s.Path("unknown")) {
		t.Errorf("unknown kept path: %v, want an error naming it", err)
	}
	if d := cmp.Diff(before, testkit.Files(t, dir)); d != "" {
		t.Errorf("a failed gc changed the cache:\n%s", d)
	}
	notCache := t.TempDir()
	if _, err := Collect(context.Background(), Options{Dir: notCache, Keep: []string{s.Path("app")}}, nil); !errors.Is(err, cachedir.ErrNotCache) {
		t.Errorf("not a cache: %v", err)
	}
	if _, err := Collect(context.Background(), Options{Dir: dir, LockWait: -1}, nil); err == nil {
		t.Errorf("an empty keep set was accepted")
	}
	// Held by a writer: gc waits, then gives up.
	l, err := testkit.OpenCache(t, dir).Lock(context.Background(), cachedir.Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := Collect(context.Background(), Options{Dir: dir, Keep: []string{s.Path("app")}, LockWait: 50 * time.Millisecond}, nil); !errors.Is(err, cachedir.ErrBusy) {
		t.Errorf("gc beside a writer: %v, want ErrBusy", err)
	}
}

// BenchmarkCollect collects a 5,000-path cache, removing a quarter of it.
func BenchmarkCollect(b *testing.B) {
	const n = 5000
	s := testkit.NewStore(b)
	c := s.Add(b, testkit.LibraryTree(n)...)
	var loads time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "cache")
		testkit.WriteCache(b, dir, c, options(s))
		d := testkit.OpenCache(b, dir)
		testkit.Must(b, d.SyncFS())
		b.StartTimer()
		start := time.Now()
		_, err := cachegraph.Load(context.Background(), d, 0)
		testkit.Must(b, err)
		loads += time.Since(start)
		st, err := Collect(context.Background(), Options{Dir: dir, Keep: []string{s.Path("root")}, Durable: true, LockWait: -1}, nil)
		testkit.Must(b, err)
		if st.Kept+st.Paths != len(c) || st.Paths < n/4 {
			b.Fatalf("stats %+v", st)
		}
	}
	b.ReportMetric(loads.Seconds()/float64(b.N), "load-s/op")
}

// hostile adds to the cache at dir an entry of each kind a cache may not
// hold, pointing at the sentinels of o where it can, and returns what gc
// must report of each (relative name -> message).
func hostile(t *testing.T, s *testkit.Store, dir string, o *testkit.Outside) map[string]string {
	t.Helper()
	link := func(target, name string) {
		testkit.Must(t, os.Symlink(target, filepath.Join(dir, name)))
	}
	write := func(name, data string) {
		testkit.Must(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	link(o.Path("narinfo"), "11111111111111111111111111111111.narinfo")
	link(o.Path("secret"), "22222222222222222222222222222222.ls")
	link(o.Path("nar"), "nar/0000000000000000000000000000000000000000000000000000.nar.zst")
	link(o.Path("secret"), "debuginfo/0123456789abcdef0123456789abcdef01234567.debug")
	write("00000000000000000000000000000000.narinfo", "garbage\n")
	write("debuginfo/1123456789abcdef0123456789abcdef01234567.debug", "garbage")
	testkit.Must(t, syscall.Mkfifo(filepath.Join(dir, "33333333333333333333333333333333.narinfo"), 0o644))
	testkit.Must(t, syscall.Mkfifo(filepath.Join(dir, "nar", "1111111111111111111111111111111111111111111111111111.nar.xz"), 0o644))
	// A directory goes, with what it holds.
	testkit.Must(t, os.MkdirAll(filepath.Join(dir, "44444444444444444444444444444444.narinfo", "x"), 0o755))
	// Unkept narinfos whose URL names a file that is not a NAR: the
	// cache's nix-cache-info, and a kept path's narinfo.
	tool := narinfo.HashPart(s.Path("tool")) + ".narinfo"
	junk := narinfo.HashPart(s.Path("junk")) + ".narinfo"
	appInfo := narinfo.HashPart(s.Path("app")) + ".narinfo"
	edit := func(name, url string) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		testkit.Must(t, err)
		lines := strings.Split(string(data), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "URL: ") {
				lines[i] = "URL: " + url
			}
		}
		write(name, strings.Join(lines, "\n"))
	}
	edit(tool, "nix-cache-info")
	edit(junk, "nar/../"+appInfo)
	return map[string]string{
		"00000000000000000000000000000000.narinfo":                         "does not parse: *",
		"11111111111111111111111111111111.narinfo":                         "a symbolic link (not followed)",
		"22222222222222222222222222222222.ls":                              "a symbolic link (not followed)",
		"33333333333333333333333333333333.narinfo":                         "not a regular file but a named pipe (FIFO)",
		"nar/1111111111111111111111111111111111111111111111111111.nar.xz":  "not a regular file but a named pipe (FIFO)",
		"nar/0000000000000000000000000000000000000000000000000000.nar.zst": "a symbolic link (not followed)",
		"debuginfo/0123456789abcdef0123456789abcdef01234567.debug":         "a symbolic link (not followed)",
		"debuginfo/1123456789abcdef0123456789abcdef01234567.debug":         "not a debuginfo entry *",
		tool: `URL "nix-cache-info" does not name a NAR directly under nar/`,
		junk: `URL "nar/../` + appInfo + `" does not name a NAR directly under nar/`,
	}
}

// A hostile entry is removed itself, never what it points to or names,
// and reported; gc goes on and leaves a clean cache.
func TestCollectHostile(t *testing.T) {
	s, dir := world(t)
	o := testkit.NewOutside(t, "narinfo", "secret", "nar")
	want := hostile(t, s, dir, o)
	app := s.Path("app")
	before := testkit.Tree(t, dir)

	run := func(dry bool) map[string]string {
		got := map[string]string{}
		_, events := collect(t, Options{Dir: dir, Keep: []string{app}, DryRun: dry, LockWait: -1})
		for _, e := range events {
			testkit.NoSentinel(t, e.Path+e.Msg)
			if e.Kind == Invalid {
				rel, _ := filepath.Rel(dir, e.Path)
				got[rel] = e.Msg
			}
		}
		return got
	}
	want["44444444444444444444444444444444.narinfo"] = "not a regular file but a directory"
	check := func(got map[string]string) {
		t.Helper()
		for name, w := range want {
			if ok, _ := filepath.Match(w, got[name]); !ok {
				t.Errorf("%s: reported %q, want %q", name, got[name], w)
			}
			delete(got, name)
		}
		for name, msg := range got {
			t.Errorf("%s reported invalid: %s", name, msg)
		}
	}
	check(run(true))
	if d := cmp.Diff(before, testkit.Tree(t, dir)); d != "" {
		t.Errorf("a dry run changed the cache:\n%s", d)
	}
	check(run(false))
	for name := range want {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nix-cache-info")); err != nil {
		t.Errorf("nix-cache-info, which a narinfo's URL named: %v", err)
	}
	if got := names(storePaths(t, dir)); !slices.Contains(got, "app") {
		t.Errorf("kept %v", got)
	}
	checkClean(t, dir)
	// The next gc finds nothing left to remove.
	if again := run(false); len(again) > 0 {
		t.Errorf("second gc: %v", again)
	}
}

// A layout directory that is a symlink is removed as an entry; nothing
// in what it points to is touched.
func TestCollectSymlinkedNarDir(t *testing.T) {
	s, dir := world(t)
	o := testkit.NewOutside(t, "0000000000000000000000000000000000000000000000000000.nar.zst")
	testkit.Must(t, os.RemoveAll(filepath.Join(dir, "nar")))
	testkit.Must(t, os.Symlink(o.Dir, filepath.Join(dir, "nar")))
	st, events := collect(t, Options{Dir: dir, Keep: []string{s.Path("app")}, LockWait: -1})
	var invalid []string
	for _, e := range events {
		if e.Kind == Invalid {
			invalid = append(invalid, e.Path+": "+e.Msg)
		}
	}
	if d := cmp.Diff([]string{filepath.Join(dir, "nar") + ": a symbolic link where a directory must be (not followed)"}, invalid); d != "" {
		t.Errorf("invalid (-want +got):\n%s", d)
	}
	if st.Invalid != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nar is still there: %v", err)
	}
}

// On a file system without flock gc does not run (a dry run does, with a
// warning), and changes nothing.
func TestCollectWithoutFlock(t *testing.T) {
	s, dir := world(t)
	before := testkit.Tree(t, dir)
	ctx := cachedir.WithFlock(context.Background(), func(int, int) error { return syscall.ENOLCK })
	o := Options{Dir: dir, Keep: []string{s.Path("app")}, LockWait: -1}
	if _, err := Collect(ctx, o, nil); !errors.Is(err, ErrNoLock) {
		t.Errorf("gc without flock: %v, want ErrNoLock", err)
	}
	o.DryRun = true
	var warned bool
	if _, err := Collect(ctx, o, func(e Event) { warned = warned || e.Kind == Warning && strings.Contains(e.Msg, "no flock") }); err != nil || !warned {
		t.Errorf("dry run without flock: %v, warned %v", err, warned)
	}
	if d := cmp.Diff(before, testkit.Tree(t, dir)); d != "" {
		t.Errorf("the cache changed:\n%s", d)
	}
}

// A kept path whose narinfo is invalid does not stop gc: the entry goes,
// with a warning, and the other kept paths' closures stay.
func TestCollectInvalidKeptNarInfo(t *testing.T) {
	s, dir := world(t)
	o := testkit.NewOutside(t, "narinfo")
	junk := filepath.Join(dir, cachedir.NarInfoName(s.Path("junk")))
	testkit.Must(t, os.Remove(junk))
	testkit.Must(t, os.Symlink(o.Path("narinfo"), junk))
	_, events := collect(t, Options{Dir: dir, Keep: []string{s.Path("app"), s.Path("junk")}, LockWait: -1})
	var warned bool
	for _, e := range events {
		testkit.NoSentinel(t, e.Path+e.Msg)
		warned = warned || e.Kind == Warning && e.Path == s.Path("junk")
	}
	if !warned {
		t.Errorf("no warning about the invalid kept narinfo: %+v", events)
	}
	if _, err := os.Lstat(junk); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the invalid kept narinfo is still there: %v", err)
	}
	if got := names(storePaths(t, dir)); !slices.Contains(got, "app") || slices.Contains(got, "junk") {
		t.Errorf("kept %v", got)
	}
	checkClean(t, dir)
	if _, err := Collect(context.Background(), Options{Dir: dir, Keep: []string{s.Path("junk")}, LockWait: -1}, nil); err == nil {
		t.Errorf("gc keeping only a path without a narinfo succeeded")
	}
}

// An invalid nix-cache-info leaves no store directory to judge paths by:
// gc removes the entry, and nothing else, and fails.
func TestCollectInvalidCacheInfo(t *testing.T) {
	s, dir := world(t)
	o := testkit.NewOutside(t, "info")
	info := filepath.Join(dir, cachedir.InfoFile)
	testkit.Must(t, os.Remove(info))
	testkit.Must(t, os.Symlink(o.Path("info"), info))
	before := testkit.Tree(t, dir)
	delete(before, cachedir.InfoFile)
	var invalid []string
	_, err := Collect(context.Background(), Options{Dir: dir, Keep: []string{s.Path("app")}, LockWait: -1}, func(e Event) {
		if e.Kind == Invalid {
			invalid = append(invalid, e.Path+": "+e.Msg)
		}
	})
	if err == nil {
		t.Errorf("gc of a cache with a symlinked nix-cache-info succeeded")
	} else {
		testkit.NoSentinel(t, err.Error())
	}
	if d := cmp.Diff([]string{info + ": a symbolic link (not followed)"}, invalid); d != "" {
		t.Errorf("invalid (-want +got):\n%s", d)
	}
	if d := cmp.Diff(before, testkit.Tree(t, dir)); d != "" {
		t.Errorf("gc changed more than the entry (-before +after):\n%s", d)
	}
}
