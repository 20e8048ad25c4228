package cache_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// addChunkyTree adds to the store a path whose NAR spans several 1 MiB
// chunks: compressible text with incompressible runs.
func addChunkyTree(t *testing.T) string {
	t.Helper()
	r := rand.New(rand.NewPCG(6, 6))
	words := strings.Fields("store path closure narinfo reference deriver chunk frame stream block")
	var b strings.Builder
	for b.Len() < 3500<<10 {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			fmt.Fprintf(&b, "%x", r.Uint64())
		}
		b.WriteByte(' ')
	}
	return testkit.AddToNix(t, testkit.Path{Name: "chunky-tree",
		Files: map[string]string{"share/big": b.String(), "small": "small\n"}})[0]
}

// A NAR compressed as several independent chunks (concatenated zstd frames,
// xz or bzip2 streams) is substituted by the real Nix into a fresh store:
// Nix decompresses through libarchive, which must read past the first one.
func TestMultiChunkNARSubstitutes(t *testing.T) {
	nixtest.Require(t)
	tree := addChunkyTree(t)
	type variant struct {
		m       compress.Method
		program string
	}
	variants := []variant{{compress.Zstd, ""}, {compress.XZ, ""}, {compress.Bzip2, ""}}
	if xz, err := exec.LookPath("xz"); err == nil {
		variants = append(variants, variant{compress.XZ, xz})
	}
	for _, v := range variants {
		name := string(v.m)
		if v.program != "" {
			name += "-program"
		}
		t.Run(name, func(t *testing.T) {
			t.Setenv("MKBINARYCACHE_CHUNK_SIZE", strconv.Itoa(1<<20))
			dir := filepath.Join(t.TempDir(), "cache")
			testkit.WriteCache(t, dir, closure.Closure{{StorePath: tree}}, cache.Options{StoreDir: "/nix/store",
				Compression: v.m, Threads: 2, XZProgram: v.program})
			nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*"))
			if len(nars) != 1 {
				t.Fatalf("want one NAR, got %q", nars)
			}
			if chunks := countStreams(t, nars[0], v.m); chunks < 3 {
				t.Fatalf("%s: %d compressed streams, want at least 3", nars[0], chunks)
			}
			opts := strings.Join(nixtest.SubstituterOpts("file://"+dir), " ")
			out, err := nixtest.FreshStore(t, fmt.Sprintf(`set -e
nix-store --realise %s %s --option max-jobs 0
nix-store --verify-path %s
nix-store --dump %s | sha256sum`, tree, opts, tree, tree))
			if err != nil {
				t.Fatalf("substitute %s from a %s cache: %v\n%s", tree, name, err, out)
			}
			want := nixtest.Run(t, "sh", "-c", "nix-store --dump "+tree+" | sha256sum")
			if !strings.Contains(out, want) {
				t.Errorf("the substituted NAR differs: want %s in\n%s", want, out)
			}
		})
	}
}

// countStreams counts the compressed streams of a NAR file by their magic
// numbers at the start of each: enough to show it is chunked.
func countStreams(t *testing.T, path string, m compress.Method) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	magic := map[compress.Method]string{
		compress.Zstd:  "\x28\xb5\x2f\xfd",
		compress.XZ:    "\xfd7zXZ\x00",
		compress.Bzip2: "BZh9",
	}[m]
	return strings.Count(string(data), magic)
}
