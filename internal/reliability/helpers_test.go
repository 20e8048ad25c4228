package reliability

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

func binary(t testing.TB) string {
	return filepath.Join(nixtest.BuildBinary(t), "bin", "mkbinarycache")
}

// addPaths adds generated trees to the store with nix-store --add, once per
// process and key: the content is a function of the seed, so the store
// paths are the same on every run and the host store does not grow.
var added sync.Map // key -> []string

func addPaths(t testing.TB, key string, gen func(dir string) error) []string {
	t.Helper()
	if v, ok := added.Load(key); ok {
		return v.([]string)
	}
	dir, err := os.MkdirTemp("", "reliability-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := gen(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	// nix-store --add takes many paths at once; in chunks, for ARG_MAX.
	for i := 0; i < len(entries); i += 500 {
		args := []string{"--add"}
		for _, e := range entries[i:min(i+500, len(entries))] {
			args = append(args, filepath.Join(dir, e.Name()))
		}
		out := nixtest.Run(t, "nix-store", args...)
		paths = append(paths, strings.Fields(out)...)
	}
	added.Store(key, paths)
	return paths
}

// pseudoRandom is incompressible, reproducible content.
func pseudoRandom(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// smallPaths adds n small store paths (a text file and a symlink each).
func smallPaths(t testing.TB, n int) []string {
	return addPaths(t, fmt.Sprintf("small-%d", n), func(dir string) error {
		for i := range n {
			d := filepath.Join(dir, fmt.Sprintf("rel-small-%05d", i))
			if err := os.MkdirAll(d+"/share", 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(d+"/share/data", []byte(strings.Repeat(fmt.Sprintf("path %d\n", i), 1+i%50)), 0o644); err != nil {
				return err
			}
			if err := os.Symlink("share/data", d+"/link"); err != nil {
				return err
			}
		}
		return nil
	})
}

// blobPath adds one store path holding size bytes of incompressible data.
func blobPath(t testing.TB, name string, size int) string {
	return addPaths(t, "blob-"+name, func(dir string) error {
		d := filepath.Join(dir, "rel-"+name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		return os.WriteFile(d+"/blob", pseudoRandom(int64(size), size), 0o644)
	})[0]
}

// run runs the binary, failing the test on a non-zero exit.
func run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// treeSums maps each file of dir (relative name; symlinks and dirs too) to
// a hash of its content and mode.
func treeSums(t testing.TB, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			sums[rel] = "dir " + info.Mode().String()
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			sums[rel] = "symlink " + target
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(data)
			sums[rel] = info.Mode().String() + " " + hex.EncodeToString(s[:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func diffSums(a, b map[string]string) string {
	var out bytes.Buffer
	for k, v := range a {
		if b[k] != v {
			fmt.Fprintf(&out, "%s: %q vs %q\n", k, v, b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			fmt.Fprintf(&out, "%s: missing vs %q\n", k, v)
		}
	}
	return out.String()
}

// verifyCache runs verify in-process and returns its problems, leaving out
// references without a narinfo when partial is set (a run killed midway
// has written some paths but not yet those they refer to).
func verifyCache(t testing.TB, dir string, partial bool) []string {
	t.Helper()
	var problems []string
	_, err := verify.Cache(context.Background(), verify.Options{Dir: dir}, func(p verify.Problem) {
		if partial && strings.Contains(p.Msg, "has no narinfo in the cache") {
			return
		}
		problems = append(problems, p.String())
	})
	if err != nil {
		t.Fatalf("verify %s: %v", dir, err)
	}
	return problems
}

func tmpFiles(dir string) []string {
	var out []string
	for _, d := range []string{dir, filepath.Join(dir, "nar"), filepath.Join(dir, "debuginfo")} {
		m, _ := filepath.Glob(filepath.Join(d, ".tmp-*"))
		out = append(out, m...)
	}
	return out
}
