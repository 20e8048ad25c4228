package cache_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// fakeStore makes two store paths: b refers to a, and to itself.
func fakeStore(t *testing.T) (*testkit.Store, closure.Closure) {
	t.Helper()
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{
		Name: "a",
		Files: map[string]string{"share/greeting": "hi\n", "share/empty-file": "",
			"share/big": strings.Repeat("some data that compresses ", 200000)},
		Symlinks: map[string]string{"share/link": "greeting"},
		Dirs:     []string{"share/empty"},
	}, testkit.Path{
		Name:        "b",
		Executables: map[string]string{"bin/hello": "#!/bin/sh\ncat " + s.Path("a") + "/share/greeting\n"},
		Refs:        []string{"a", "b"},
	})
	return s, c
}

func write(c closure.Closure, dir string, o cache.Options) (cache.Stats, error) {
	w, err := cache.NewWriter(dir, o)
	if err != nil {
		return cache.Stats{}, err
	}
	return w.Write(context.Background(), c, nil)
}

func TestWrite(t *testing.T) {
	for _, m := range compress.Methods {
		t.Run(string(m), func(t *testing.T) {
			s, c := fakeStore(t)
			dir := t.TempDir()
			w, err := cache.NewWriter(dir, s.Options(m))
			testkit.Must(t, err)
			var events []string
			st, err := w.Write(context.Background(), c, func(e cache.Event) {
				if e.Kind != cache.Progress {
					events = append(events, fmt.Sprintf("%d %s %d %d", e.Kind, filepath.Base(e.Path), e.Paths, e.NarBytes))
				}
			})
			testkit.Must(t, err)
			if st.Paths != 2 || st.NarBytes != c[0].NarSize+c[1].NarSize {
				t.Errorf("stats %+v", st)
			}
			// Planned, then each path started and written; a before b,
			// which refers to it.
			a, b := filepath.Base(c[0].StorePath), filepath.Base(c[1].StorePath)
			want := []string{fmt.Sprintf("%d . 2 %d", cache.Planned, c[0].NarSize+c[1].NarSize),
				fmt.Sprintf("%d %s 0 0", cache.Started, a), fmt.Sprintf("%d %s 0 0", cache.Started, b),
				fmt.Sprintf("%d %s 0 %d", cache.Written, a, c[0].NarSize), fmt.Sprintf("%d %s 0 %d", cache.Written, b, c[1].NarSize)}
			if len(events) == len(want) {
				sort.Strings(events[1:3]) // started concurrently
				sort.Strings(want[1:3])
			}
			if d := cmp.Diff(want, events); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			info, err := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
			testkit.Must(t, err)
			if string(info) != "StoreDir: "+s.Dir+"\n" {
				t.Errorf("nix-cache-info %q", info)
			}
			for _, d := range cachedir.Dirs {
				if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
					t.Errorf("no directory %s: %v", d, err)
				}
			}
			checkNarInfos(t, dir, c, m)
			// Exactly the expected files: no temporary files left.
			var names []string
			for name := range testkit.Tree(t, dir) {
				names = append(names, name)
			}
			sort.Strings(names)
			if len(names) != 1+len(cachedir.Dirs)+1+2*2 {
				t.Errorf("unexpected files: %v", names)
			}
		})
	}
}

// checkNarInfos checks that the cache at dir holds c, compressed with m, and
// nothing else.
func checkNarInfos(t *testing.T, dir string, c closure.Closure, m compress.Method) {
	t.Helper()
	nis := testkit.NarInfos(t, dir)
	if len(nis) != len(c) {
		t.Errorf("%d narinfos, want %d", len(nis), len(c))
	}
	for _, p := range c {
		ni := nis[p.StorePath]
		if ni == nil {
			t.Errorf("no narinfo for %s", p.StorePath)
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, cachedir.NarInfoName(p.StorePath)))
		testkit.Must(t, err)
		if ni.String() != string(text) {
			t.Errorf("narinfo does not round-trip:\n%s", text)
		}
		var refs []string
		for _, r := range p.References {
			refs = append(refs, filepath.Base(r))
		}
		want := map[string]any{"StorePath": p.StorePath, "NarHash": p.NarHash.Format(nixhash.NixBase32, true),
			"NarSize": p.NarSize, "References": refs}
		got := map[string]any{"StorePath": ni.StorePath, "NarHash": ni.NarHash.String(),
			"NarSize": ni.NarSize, "References": ni.References}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("narinfo (-want +got):\n%s", diff)
		}
		testkit.CheckNAR(t, dir, ni, m, testkit.Nardump(t, p.StorePath))
	}
}

// The cache is byte-identical whatever the core count, also when NARs are
// compressed as several chunks in parallel (small chunks here, through
// MKBINARYCACHE_CHUNK_SIZE).
func TestDeterministic(t *testing.T) {
	s, c := fakeStore(t)
	for _, tc := range []struct {
		m     compress.Method
		chunk int
	}{{compress.Zstd, 0}, {compress.Zstd, 4 << 10}, {compress.XZ, 4 << 10}, {compress.Bzip2, 4 << 10}} {
		t.Run(fmt.Sprintf("%s-%d", tc.m, tc.chunk), func(t *testing.T) {
			if tc.chunk > 0 {
				t.Setenv("MKBINARYCACHE_CHUNK_SIZE", strconv.Itoa(tc.chunk))
			}
			var first map[string]string
			for _, jobs := range []int{1, 2, 8} {
				dir := t.TempDir()
				o := s.Options(tc.m)
				o.Jobs, o.Threads = jobs, jobs
				testkit.WriteCache(t, dir, c, o)
				checkNarInfos(t, dir, c, tc.m)
				got := testkit.Tree(t, dir)
				if first == nil {
					first = got
					continue
				}
				if diff := cmp.Diff(first, got); diff != "" {
					t.Errorf("jobs %d: cache differs from jobs 1 (-1 +%d):\n%s", jobs, jobs, diff)
				}
			}
		})
	}
}

func TestMismatch(t *testing.T) {
	s, c := fakeStore(t)
	other := sha256.Sum256([]byte("other"))
	for _, tc := range []struct {
		name   string
		change func(*closure.Path)
		want   string
	}{
		{"hash", func(p *closure.Path) { p.NarHash = nixhash.MustNewHash(nixhash.SHA256, other[:]) }, ": NAR hash mismatch: Nix recorded sha256:"},
		{"size", func(p *closure.Path) { p.NarSize++ }, ": NAR size mismatch: Nix recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append(closure.Closure(nil), c...)
			tc.change(&bad[1])
			dir := t.TempDir()
			o := s.Options(compress.Zstd)
			o.Jobs = 1
			_, err := write(bad, dir, o)
			if err == nil || !strings.Contains(err.Error(), bad[1].StorePath+tc.want) {
				t.Fatalf("error %v, want %q", err, bad[1].StorePath+tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, cachedir.NarInfoName(bad[1].StorePath))); !os.IsNotExist(err) {
				t.Errorf("narinfo of the corrupt path exists: %v", err)
			}
			testkit.CheckCache(t, dir)
		})
	}
}

func TestIncremental(t *testing.T) {
	s, c := fakeStore(t)
	dir := t.TempDir()
	o := s.Options(compress.Zstd)
	testkit.WriteCache(t, dir, c[:1], o)
	before := testkit.Tree(t, dir)
	st := testkit.WriteCache(t, dir, c, o)
	if st.Paths != 2 || st.Skipped != 1 {
		t.Errorf("second run: %+v, want 2 paths, 1 skipped", st)
	}
	after := testkit.Tree(t, dir)
	for name, data := range before {
		if after[name] != data {
			t.Errorf("%s was rewritten", name)
		}
	}
	o.StoreDir = "/other/store"
	if _, err := write(c, dir, o); err == nil || !strings.Contains(err.Error(), "the cache is for store") {
		t.Errorf("store dir mismatch: error %v", err)
	}
}

func TestMissingPath(t *testing.T) {
	s, c := fakeStore(t)
	testkit.Must(t, os.RemoveAll(c[0].StorePath))
	_, err := write(c, t.TempDir(), s.Options(compress.None))
	if err == nil || !strings.Contains(err.Error(), "dump "+c[0].StorePath) {
		t.Errorf("error %v, want one naming %s", err, c[0].StorePath)
	}
}
