package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

const (
	hA = "00bgd045z0d4icpbc2yyz4gx48ak44la"
	hB = "11bgd045z0d4icpbc2yyz4gx48ak44la"
)

// fakeStore makes two store paths in a store dir of its own: b refers to a.
func fakeStore(t *testing.T) (storeDir string, c closure.Closure) {
	t.Helper()
	storeDir = filepath.Join(t.TempDir(), "store")
	a := filepath.Join(storeDir, hA+"-a")
	b := filepath.Join(storeDir, hB+"-b")
	must(t, os.MkdirAll(filepath.Join(a, "share/empty"), 0o755))
	must(t, os.WriteFile(filepath.Join(a, "share/greeting"), []byte("hi\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(a, "share/empty-file"), nil, 0o644))
	big := bytes.Repeat([]byte("some data that compresses "), 200000)
	must(t, os.WriteFile(filepath.Join(a, "share/big"), big, 0o644))
	must(t, os.Symlink("greeting", filepath.Join(a, "share/link")))
	must(t, os.MkdirAll(filepath.Join(b, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(b, "bin/hello"), []byte("#!/bin/sh\ncat "+a+"/share/greeting\n"), 0o755))
	for _, p := range []struct {
		path string
		refs []string
	}{{a, nil}, {b, []string{a, b}}} {
		var buf bytes.Buffer
		must(t, nardump.Dump(&buf, p.path))
		sum := sha256.Sum256(buf.Bytes())
		c = append(c, closure.Path{StorePath: p.path, NarHash: nixhash.MustNewHash(nixhash.SHA256, sum[:]), NarSize: uint64(buf.Len()), References: p.refs})
	}
	return storeDir, c
}

func write(c closure.Closure, dir string, o Options) (Stats, error) {
	w, err := NewWriter(dir, o)
	if err != nil {
		return Stats{}, err
	}
	return w.Write(context.Background(), c, nil)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tree maps every file under dir to its contents (directories to "<dir>").
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			m[rel] = "<dir>"
			return nil
		}
		data, err := os.ReadFile(p)
		m[rel] = string(data)
		return err
	}))
	return m
}

func TestWrite(t *testing.T) {
	for _, m := range compress.Methods {
		t.Run(string(m), func(t *testing.T) {
			storeDir, c := fakeStore(t)
			dir := t.TempDir()
			w, err := NewWriter(dir, Options{StoreDir: storeDir, Compression: m, Level: compress.DefaultLevel})
			must(t, err)
			var events []string
			st, err := w.Write(context.Background(), c, func(e Event) {
				if e.Kind != Progress {
					events = append(events, fmt.Sprintf("%d %s %d %d", e.Kind, filepath.Base(e.Path), e.Paths, e.NarBytes))
				}
			})
			must(t, err)
			if st.Paths != 2 || st.NarBytes != c[0].NarSize+c[1].NarSize {
				t.Errorf("stats %+v", st)
			}
			// Planned, then each path started and written; a before b,
			// which refers to it.
			a, b := filepath.Base(c[0].StorePath), filepath.Base(c[1].StorePath)
			want := []string{fmt.Sprintf("%d . 2 %d", Planned, c[0].NarSize+c[1].NarSize),
				fmt.Sprintf("%d %s 0 0", Started, a), fmt.Sprintf("%d %s 0 0", Started, b),
				fmt.Sprintf("%d %s 0 %d", Written, a, c[0].NarSize), fmt.Sprintf("%d %s 0 %d", Written, b, c[1].NarSize)}
			if len(events) == len(want) {
				sort.Strings(events[1:3]) // started concurrently
			}
			if d := cmp.Diff(want, events); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			info, err := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
			must(t, err)
			if string(info) != "StoreDir: "+storeDir+"\n" {
				t.Errorf("nix-cache-info %q", info)
			}
			for _, d := range cachedir.Dirs {
				if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
					t.Errorf("no directory %s: %v", d, err)
				}
			}
			for _, p := range c {
				checkNarInfo(t, dir, p, m)
			}
			// Exactly the expected files: no temporary files left.
			var names []string
			for name := range tree(t, dir) {
				names = append(names, name)
			}
			sort.Strings(names)
			if len(names) != 1+len(cachedir.Dirs)+1+2*2 {
				t.Errorf("unexpected files: %v", names)
			}
		})
	}
}

func checkNarInfo(t *testing.T, dir string, p closure.Path, m compress.Method) {
	t.Helper()
	text, err := os.ReadFile(cachedir.NarInfoPath(dir, p.StorePath))
	must(t, err)
	ni, err := narinfo.Parse(bytes.NewReader(text))
	must(t, err)
	if ni.String() != string(text) {
		t.Errorf("narinfo does not round-trip:\n%s", text)
	}
	var refs []string
	for _, r := range p.References {
		refs = append(refs, filepath.Base(r))
	}
	want := map[string]any{"StorePath": p.StorePath, "Compression": string(m), "NarHash": p.NarHash.Format(nixhash.NixBase32, true),
		"NarSize": p.NarSize, "References": refs}
	got := map[string]any{"StorePath": ni.StorePath, "Compression": ni.Compression, "NarHash": ni.NarHash.String(),
		"NarSize": ni.NarSize, "References": ni.References}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("narinfo (-want +got):\n%s", diff)
	}
	file, err := os.ReadFile(filepath.Join(dir, ni.URL))
	must(t, err)
	sum := sha256.Sum256(file)
	fh := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum[:], nixhash.NixBase32, true)
	if ni.FileHash.String() != fh.String() || ni.FileSize != uint64(len(file)) {
		t.Errorf("FileHash/FileSize %s/%d, file has %s/%d", ni.FileHash, ni.FileSize, fh, len(file))
	}
	if ni.URL != "nar/"+fh.Format(nixhash.NixBase32, false)+".nar"+m.Ext() {
		t.Errorf("URL %s", ni.URL)
	}
	r, err := compress.NewReader(bytes.NewReader(file), m)
	must(t, err)
	nar, err := io.ReadAll(r)
	must(t, err)
	var want2 bytes.Buffer
	must(t, nardump.Dump(&want2, p.StorePath))
	if !bytes.Equal(nar, want2.Bytes()) {
		t.Errorf("%s: decompressed NAR differs from the dump", p.StorePath)
	}
}

// The cache is byte-identical whatever the core count, also when NARs are
// compressed as several chunks in parallel (a small ChunkSize here).
func TestDeterministic(t *testing.T) {
	storeDir, c := fakeStore(t)
	for _, tc := range []struct {
		m     compress.Method
		chunk int
	}{{compress.Zstd, 0}, {compress.Zstd, 4 << 10}, {compress.XZ, 4 << 10}, {compress.Bzip2, 4 << 10}} {
		t.Run(fmt.Sprintf("%s-%d", tc.m, tc.chunk), func(t *testing.T) {
			var first map[string]string
			for _, jobs := range []int{1, 2, 8} {
				dir := t.TempDir()
				_, err := write(c, dir, Options{StoreDir: storeDir, Compression: tc.m, Level: compress.DefaultLevel,
					Jobs: jobs, Threads: jobs, ChunkSize: tc.chunk})
				must(t, err)
				for _, p := range c {
					checkNarInfo(t, dir, p, tc.m)
				}
				got := tree(t, dir)
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
	storeDir, c := fakeStore(t)
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
			_, err := write(bad, dir, Options{StoreDir: storeDir, Compression: compress.Zstd, Level: compress.DefaultLevel, Jobs: 1})
			if err == nil || !strings.Contains(err.Error(), bad[1].StorePath+tc.want) {
				t.Fatalf("error %v, want %q", err, bad[1].StorePath+tc.want)
			}
			if _, err := os.Stat(cachedir.NarInfoPath(dir, bad[1].StorePath)); !os.IsNotExist(err) {
				t.Errorf("narinfo of the corrupt path exists: %v", err)
			}
			nars, _ := os.ReadDir(filepath.Join(dir, "nar"))
			for _, n := range nars {
				if strings.HasPrefix(n.Name(), ".tmp") {
					t.Errorf("temporary file left: %s", n.Name())
				}
			}
		})
	}
}

func TestIncremental(t *testing.T) {
	storeDir, c := fakeStore(t)
	dir := t.TempDir()
	o := Options{StoreDir: storeDir, Compression: compress.Zstd, Level: compress.DefaultLevel}
	_, err := write(c[:1], dir, o)
	must(t, err)
	before := tree(t, dir)
	st, err := write(c, dir, o)
	must(t, err)
	if st.Paths != 2 || st.Skipped != 1 {
		t.Errorf("second run: %+v, want 2 paths, 1 skipped", st)
	}
	after := tree(t, dir)
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
	storeDir, c := fakeStore(t)
	must(t, os.RemoveAll(c[0].StorePath))
	_, err := write(c, t.TempDir(), Options{StoreDir: storeDir, Compression: compress.None, Level: compress.DefaultLevel})
	if err == nil || !strings.Contains(err.Error(), "dump "+c[0].StorePath) {
		t.Errorf("error %v, want one naming %s", err, c[0].StorePath)
	}
}
