package nardump

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
)

// BenchmarkDump dumps $NARDUMP_BENCH_PATH (e.g. a large store path).
func BenchmarkDump(b *testing.B) {
	p := os.Getenv("NARDUMP_BENCH_PATH")
	if p == "" {
		b.Skip("set NARDUMP_BENCH_PATH")
	}
	for b.Loop() {
		if err := Dump(io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkManySmall dumps 700 small paths, as in a real closure, per op:
// the subdirectories of $NARDUMP_BENCH_DIRS (e.g. /usr/share/doc), or
// generated ones. "go-nix" is how Dump worked before the Dumper: go-nix's
// DumpPath through a bufio.Writer, with listing.Read on a pipe for a tree.
func BenchmarkManySmall(b *testing.B) {
	paths := benchPaths(b)
	var bytes int64
	var d Dumper
	for _, p := range paths {
		info, err := d.Dump(io.Discard, p)
		if err != nil {
			b.Fatal(err)
		}
		bytes += info.Size
	}
	b.Logf("%d paths, %d bytes of NAR", len(paths), bytes)
	run := func(name string, dump func(p string) error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(bytes)
			b.ReportAllocs()
			for b.Loop() {
				for _, p := range paths {
					if err := dump(p); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
		})
	}
	bw := bufio.NewWriterSize(io.Discard, DefaultBufferSize)
	run("go-nix", func(p string) error {
		bw.Reset(io.Discard)
		if err := nar.DumpPath(bw, p); err != nil {
			return err
		}
		return bw.Flush()
	})
	run("go-nix+tree", func(p string) error {
		pr, pw := io.Pipe()
		done := make(chan error)
		go func() {
			_, err := listing.Read(pr)
			pr.CloseWithError(err)
			done <- err
		}()
		bw.Reset(pw)
		err := nar.DumpPath(bw, p)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		if lerr := <-done; err == nil {
			err = lerr
		}
		return err
	})
	run("Dumper", func(p string) error {
		_, err := d.Dump(io.Discard, p)
		return err
	})
	var buf []byte
	run("Dumper.Append", func(p string) error {
		var err error
		buf, _, err = d.Append(buf[:0], p)
		return err
	})
	dt := Dumper{Tree: true}
	run("Dumper+tree", func(p string) error {
		_, err := dt.Dump(io.Discard, p)
		return err
	})
}

func benchPaths(b *testing.B) []string {
	if dir := os.Getenv("NARDUMP_BENCH_DIRS"); dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		var paths []string
		for _, e := range ents {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
		return paths
	}
	// Like a package's doc directory: a few small files, a subdirectory,
	// a symlink.
	root := b.TempDir()
	var paths []string
	for i := range 700 {
		p := filepath.Join(root, fmt.Sprintf("path%03d", i))
		files := map[string]int{"copyright": 1500 + i%700, "changelog.gz": 300 + i*37%9000, "README": 200, "examples/a.conf": 900, "examples/b.sh": 120}
		for name, size := range files {
			f := filepath.Join(p, name)
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(f, make([]byte, size), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.Symlink("README", filepath.Join(p, "README.txt")); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}
