package testkit

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// Path describes a store path to make. Its hash part is derived from Name,
// so a test names paths and never spells hashes.
type Path struct {
	Name string
	// Files are regular files (relative name -> contents, mode 0644), and
	// Executables the same with mode 0755; the name "" makes the path
	// itself a regular file.
	Files, Executables map[string]string
	Symlinks           map[string]string // relative name -> target
	Dirs               []string          // empty directories
	Refs               []string          // names of the paths it refers to, itself included if it does
	Deriver            string            // name of its .drv, or ""
}

// write makes the path's tree at dir.
func (p Path) write(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if data, ok := p.Files[""]; ok {
		Must(t, os.WriteFile(dir, []byte(data), 0o644))
		return
	}
	Must(t, os.MkdirAll(dir, 0o755))
	for _, d := range p.Dirs {
		Must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for _, set := range []struct {
		files map[string]string
		mode  os.FileMode
	}{{p.Files, 0o644}, {p.Executables, 0o755}} {
		for name, data := range set.files {
			f := filepath.Join(dir, name)
			Must(t, os.MkdirAll(filepath.Dir(f), 0o755))
			Must(t, os.WriteFile(f, []byte(data), set.mode))
			Must(t, os.Chmod(f, set.mode)) // whatever the umask
		}
	}
	for name, target := range p.Symlinks {
		f := filepath.Join(dir, name)
		Must(t, os.MkdirAll(filepath.Dir(f), 0o755))
		Must(t, os.Symlink(target, f))
	}
}

// Store is a store directory of a test's own, not Nix's: caches of it are
// written with cache.Options.StoreDir (or --store-dir) set to Dir.
type Store struct {
	Dir string
}

// NewStore makes an empty store directory in a temporary directory.
func NewStore(t testing.TB) *Store {
	t.Helper()
	s := &Store{Dir: filepath.Join(t.TempDir(), "store")}
	Must(t, os.Mkdir(s.Dir, 0o755))
	return s
}

// Path is the store path of the path named name.
func (s *Store) Path(name string) string {
	return s.Dir + "/" + HashPartOfName(name) + "-" + name
}

// HashPartOfName is the hash part a Store gives the path named name (of
// a name, unlike narinfo.HashPart, which takes a store path).
func HashPartOfName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return nixbase32.EncodeToString(sum[:20])
}

// Add makes the paths and returns their closure, in the order given, as
// Nix would describe it: NarHash and NarSize of their dumps, references
// sorted.
func (s *Store) Add(t testing.TB, paths ...Path) closure.Closure {
	t.Helper()
	var c closure.Closure
	for _, p := range paths {
		sp := s.Path(p.Name)
		p.write(t, sp)
		cp := closure.Path{StorePath: sp}
		for _, r := range p.Refs {
			cp.References = append(cp.References, s.Path(r))
		}
		sort.Strings(cp.References)
		if p.Deriver != "" {
			cp.Deriver = s.Path(p.Deriver)
		}
		c = append(c, cp)
	}
	for i := range c {
		nar := Nardump(t, c[i].StorePath)
		sum := sha256.Sum256(nar)
		c[i].NarHash = nixhash.MustNewHash(nixhash.SHA256, sum[:])
		c[i].NarSize = uint64(len(nar))
	}
	return c
}

// LibraryTree describes n small store paths, path i referring to path i/2
// as in a tree of libraries, and a path "root" referring to every even
// one: closures of thousands of paths in seconds, which no Nix build here
// makes quickly.
func LibraryTree(n int) []Path {
	var paths []Path
	var rootRefs []string
	for i := range n {
		p := Path{Name: fmt.Sprintf("p%d", i),
			Files: map[string]string{"share/doc": strings.Repeat(fmt.Sprintf("path %d\n", i), 1+i%50)}}
		if i > 1 {
			p.Refs = []string{fmt.Sprintf("p%d", i/2)}
		}
		if i%2 == 0 {
			rootRefs = append(rootRefs, p.Name)
		}
		paths = append(paths, p)
	}
	return append(paths, Path{Name: "root", Refs: rootRefs})
}

// Nardump is the NAR of path as ours, nardump, writes it; Nix's is
// nixtest.NixStoreDump.
func Nardump(t testing.TB, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	Must(t, nardump.Dump(&b, path))
	return b.Bytes()
}

// AddToNix makes the paths (references aside: nix-store --add records
// none) in Nix's store and returns their store paths, in the order given.
// The same content gives the same paths every run, so the store does not
// grow.
func AddToNix(t testing.TB, paths ...Path) []string {
	t.Helper()
	nixtest.Require(t)
	dir := t.TempDir()
	var out []string
	// nix-store --add takes many paths at once; in batches, for ARG_MAX.
	for i := 0; i < len(paths); i += 500 {
		args := []string{"--add"}
		for _, p := range paths[i:min(i+500, len(paths))] {
			f := filepath.Join(dir, p.Name)
			p.write(t, f)
			args = append(args, f)
		}
		out = append(out, strings.Fields(nixtest.Run(t, "nix-store", args...))...)
	}
	if len(out) != len(paths) {
		t.Fatalf("nix-store --add printed %d paths for %d", len(out), len(paths))
	}
	return out
}

// Must fails t on an error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
