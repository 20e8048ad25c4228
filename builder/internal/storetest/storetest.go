// Package storetest makes small store directories of its own (not Nix's)
// and writes caches of them with the real cache writer, for the tests of
// the packages that read caches (gc, copy): store paths with references,
// Deriver lines and debug info files, in any number, in milliseconds.
package storetest

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
)

// Path describes a store path to make.
type Path struct {
	Name    string            // the name part; the hash part is derived from it
	Files   map[string]string // relative file name -> contents
	Refs    []string          // names of referenced paths
	Deriver string            // name of the deriving .drv path, or ""
}

// Store is a store directory.
type Store struct {
	Dir string
}

// New makes an empty store directory in a temporary directory.
func New(t testing.TB) *Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Store{Dir: dir}
}

// StorePath is the store path of the path named name: a valid Nix store
// path whose hash part is derived from the name.
func (s *Store) StorePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return s.Dir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + name
}

// Make creates the paths in the store and returns their closure
// description, as Nix would give it (NAR hashes left to the writer).
func (s *Store) Make(t testing.TB, paths ...Path) closure.Closure {
	t.Helper()
	var c closure.Closure
	for _, p := range paths {
		sp := s.StorePath(p.Name)
		if err := os.MkdirAll(sp, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range p.Files {
			f := filepath.Join(sp, name)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cp := closure.Path{StorePath: sp}
		for _, r := range p.Refs {
			cp.References = append(cp.References, s.StorePath(r))
		}
		sort.Strings(cp.References)
		if p.Deriver != "" {
			cp.Deriver = s.StorePath(p.Deriver)
		}
		c = append(c, cp)
	}
	sort.Slice(c, func(i, j int) bool { return c[i].StorePath < c[j].StorePath })
	return c
}

// Options are the cache writer's defaults for tests: this store, zstd,
// listings and the debug info index, not durable.
func (s *Store) Options() cache.Options {
	return cache.Options{StoreDir: s.Dir, Compression: compress.Zstd, Level: compress.DefaultLevel,
		NarListing: true, IndexDebugInfo: true, LockWait: -1}
}

// Write writes c into the cache at dir with o.
func Write(t testing.TB, dir string, c closure.Closure, o cache.Options) cache.Stats {
	t.Helper()
	w, err := cache.NewWriter(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := w.Write(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Files returns every regular file under dir (relative name -> contents),
// temporary files included.
func Files(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
