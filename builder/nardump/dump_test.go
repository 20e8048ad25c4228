package nardump_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// Special files are refused, naming the path and what it is, as
// nix-store --dump refuses them.
func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, f func(p string) error) string {
		p := filepath.Join(dir, name)
		testkit.Must(t, os.MkdirAll(p, 0o755))
		if err := f(filepath.Join(p, "x")); err != nil {
			t.Skipf("cannot make %s: %v", name, err)
		}
		return p
	}
	cases := map[string]string{
		mk("fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }):                       "a named pipe (FIFO)",
		mk("chr", func(p string) error { return syscall.Mknod(p, syscall.S_IFCHR|0o600, 1<<8|3) }): "a character device",
		mk("blk", func(p string) error { return syscall.Mknod(p, syscall.S_IFBLK|0o600, 7<<8) }):   "a block device",
		mk("sock", func(p string) error {
			l, err := net.Listen("unix", p)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		}): "a socket",
	}
	for root, kind := range cases {
		// In a directory, and as the root itself.
		for _, p := range []string{root, root + "/x"} {
			_, err := new(nardump.Dumper).Dump(io.Discard, p)
			want := fmt.Sprintf("dump %s: %s/x: %s: a NAR holds only regular files, directories and symlinks", p, root, kind)
			if err == nil || err.Error() != want {
				t.Errorf("got error %v, want %s", err, want)
			}
		}
	}
	if _, err := new(nardump.Dumper).Dump(io.Discard, "/dev/null"); err == nil || !strings.Contains(err.Error(), "/dev/null: a character device") {
		t.Errorf("/dev/null: %v", err)
	}
}

func TestMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing")
	err := nardump.Dump(io.Discard, p)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Errorf("got %v, want a not-exist error naming %s", err, p)
	}
}

// onWrite calls f on the first write.
type onWrite struct {
	f    func()
	done bool
}

func (w *onWrite) Write(p []byte) (int, error) {
	if !w.done {
		w.done = true
		w.f()
	}
	return len(p), nil
}

// A file that changes size while it is dumped is an error, not a NAR that
// is neither the old file nor the new.
func TestChangingSize(t *testing.T) {
	for _, c := range []struct {
		name   string
		sparse bool
		change func(p string) error
		want   string
	}{
		{"shrinks", false, func(p string) error { return os.Truncate(p, 10) }, "short read"},
		{"grows", false, func(p string) error { return appendTo(p, "more") }, "more than the"},
		{"sparse shrinks", true, func(p string) error { return os.Truncate(p, 10) }, "short read"},
		{"sparse grows", true, func(p string) error { return os.Truncate(p, 64<<20) }, "more than the"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if c.sparse {
				sparse(t, p, 4<<20, map[int64]string{4<<20 - 5: "tail"})
			} else {
				testkit.Must(t, os.WriteFile(p, bytes.Repeat([]byte("x"), 1<<20), 0o644))
			}
			// The smallest buffer: the first write comes early in the file.
			d := nardump.Dumper{BufferSize: 1}
			_, err := d.Dump(&onWrite{f: func() { testkit.Must(t, c.change(p)) }}, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p+": changed while being dumped") {
				t.Errorf("got %v, want an error naming %s with %q", err, p, c.want)
			}
		})
	}
}

func appendTo(p, s string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

type failWriter struct{}

var errBoom = errors.New("boom")

func (failWriter) Write([]byte) (int, error) { return 0, errBoom }

func TestWriteError(t *testing.T) {
	dir := t.TempDir()
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644))
	if _, err := new(nardump.Dumper).Dump(failWriter{}, dir); !errors.Is(err, errBoom) || !strings.HasPrefix(err.Error(), "dump "+dir+": ") {
		t.Errorf("got %v, want the writer's error", err)
	}
}

func TestNotAPath(t *testing.T) {
	for _, p := range []string{"", "a\x00b"} {
		if _, err := new(nardump.Dumper).Dump(io.Discard, p); err == nil {
			t.Errorf("%q: no error", p)
		}
	}
}

// smallTree makes a directory of small files, subdirectories and symlinks,
// like a store path of a typical closure.
func smallTree(t testing.TB, dir string, files int) {
	t.Helper()
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("sub%d", i%5), fmt.Sprintf("file-%d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 100+i*37%3000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub0", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
}

// A Dumper makes no allocation per file, nor per path once warm.
func TestNoAllocations(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 200)
	var d nardump.Dumper
	if a := testing.AllocsPerRun(10, func() {
		if _, err := d.Dump(io.Discard, dir); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%v allocations per dump of 200 files", a)
	}
	buf := make([]byte, 0, 1<<20)
	if a := testing.AllocsPerRun(10, func() {
		if _, _, err := d.Append(buf[:0], dir); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Append: %v allocations per dump of 200 files", a)
	}
	if a := testing.AllocsPerRun(10, func() {
		if err := nardump.Dump(io.Discard, dir); err != nil {
			t.Fatal(err)
		}
	}); a > 1 {
		t.Errorf("package Dump: %v allocations per dump", a)
	}
}

// The tree and the NAR agree with go-nix and the listing package, with
// every buffer size, for trees whose files straddle the buffer.
func TestAgainstGoNix(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 60)
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("0123456789"), 100_000), 0o755))
	var want bytes.Buffer
	testkit.Must(t, nar.DumpPath(&want, dir))
	wantTree, err := listing.Read(bytes.NewReader(want.Bytes()))
	testkit.Must(t, err)
	d := nardump.Dumper{Tree: true}
	for _, size := range []int{0, 1, 8 << 10, 8<<10 + 3, 100_000, 4 << 20} {
		d.BufferSize = size
		var got bytes.Buffer
		info, err := d.Dump(&got, dir)
		testkit.Must(t, err)
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("buffer %d: NAR differs from go-nix's", size)
		}
		if info.Size != int64(want.Len()) || info.MaxDepth != 3 {
			t.Errorf("buffer %d: Size %d MaxDepth %d, want %d and 3", size, info.Size, info.MaxDepth, want.Len())
		}
		sameTree(t, wantTree, info.Tree)
	}
	// Append, after other bytes: offsets are from the start of the NAR.
	prefix := []byte("before the NAR")
	got, info, err := d.Append(bytes.Clone(prefix), dir)
	testkit.Must(t, err)
	if !bytes.Equal(got, append(prefix, want.Bytes()...)) {
		t.Errorf("Append: NAR differs from go-nix's")
	}
	if info.Size != int64(want.Len()) || info.MaxDepth != 3 {
		t.Errorf("Append: Size %d MaxDepth %d, want %d and 3", info.Size, info.MaxDepth, want.Len())
	}
	sameTree(t, wantTree, info.Tree)
}
