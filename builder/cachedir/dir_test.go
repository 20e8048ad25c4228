package cachedir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func open(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// outside is a directory beside the cache holding sentinel files, whose
// content must never be read into an error, nor changed or removed.
type outside struct {
	dir  string
	want map[string]string
}

const sentinel = "SENTINEL-7f3a9c-must-never-appear"

func newOutside(t *testing.T) *outside {
	o := &outside{dir: t.TempDir(), want: map[string]string{}}
	for _, n := range []string{"secret", "a.nar", ".tmp-x", "x.narinfo"} {
		o.want[n] = sentinel + "-" + n
		if err := os.WriteFile(filepath.Join(o.dir, n), []byte(o.want[n]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { o.check(t) })
	return o
}

func (o *outside) check(t *testing.T) {
	t.Helper()
	got := map[string]string{}
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(o.dir, e.Name()))
		if err != nil {
			t.Errorf("outside the cache: %v", err)
		}
		got[e.Name()] = string(data)
	}
	if diff := cmp.Diff(o.want, got); diff != "" {
		t.Errorf("files outside the cache changed (-want +got):\n%s", diff)
	}
}

func noSentinel(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "SENTINEL") {
		t.Errorf("error carries a file's content: %v", err)
	}
}

func wantEntryError(t *testing.T, err error, name string) {
	t.Helper()
	noSentinel(t, err)
	var ee *EntryError
	if !errors.As(err, &ee) || !errors.Is(err, ErrInvalidEntry) {
		t.Errorf("error %v, want an EntryError", err)
		return
	}
	if ee.Name != name {
		t.Errorf("error %v names %s, want %s", err, ee.Name, name)
	}
}

// resolvers runs f with names resolved by openat2 and by the walk from
// directory descriptors (as on kernels or sandboxes without openat2).
func resolvers(t *testing.T, f func(t *testing.T, open func(t *testing.T, dir string) *Dir)) {
	t.Run("openat2", func(t *testing.T) {
		var used []*Dir
		f(t, func(t *testing.T, dir string) *Dir {
			d := open(t, dir)
			used = append(used, d)
			return d
		})
		for _, d := range used {
			if d.fallback.Load() {
				t.Skip("this kernel has no openat2: only the walk was tested")
			}
		}
	})
	t.Run("walk", func(t *testing.T) {
		f(t, func(t *testing.T, dir string) *Dir {
			d := open(t, dir)
			d.fallback.Store(true)
			return d
		})
	})
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A hostile cache: symlinked files and layout directories, a FIFO, a
// regular file where a directory must be.
func hostile(t *testing.T, o *outside) string {
	dir := t.TempDir()
	symlink(t, filepath.Join(o.dir, "x.narinfo"), filepath.Join(dir, "00000000000000000000000000000000.narinfo"))
	symlink(t, o.dir, filepath.Join(dir, "nar"))
	symlink(t, o.dir, filepath.Join(dir, "debuginfo"))
	symlink(t, "../../"+filepath.Base(o.dir)+"/secret", filepath.Join(dir, "rel.ls"))
	writeFile(t, filepath.Join(dir, "log"), "not a directory")
	if err := os.Mkdir(filepath.Join(dir, "realisations"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "11111111111111111111111111111111.narinfo"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "22222222222222222222222222222222.narinfo"), "StorePath: x\n")
	writeFile(t, filepath.Join(dir, "bad-name.narinfo"), "x")
	writeFile(t, filepath.Join(dir, "nix-cache-info"), "StoreDir: /nix/store\n")
	return dir
}

func TestNoSymlinkFollowed(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Dir) {
		o := newOutside(t)
		dir := hostile(t, o)
		d := open(t, dir)

		_, err := d.ReadFile("00000000000000000000000000000000.narinfo")
		wantEntryError(t, err, filepath.Join(dir, "00000000000000000000000000000000.narinfo"))
		_, err = d.ReadFile("rel.ls")
		wantEntryError(t, err, filepath.Join(dir, "rel.ls"))
		_, err = d.Open("nar/a.nar")
		wantEntryError(t, err, filepath.Join(dir, "nar"))
		_, err = d.Open("11111111111111111111111111111111.narinfo")
		wantEntryError(t, err, filepath.Join(dir, "11111111111111111111111111111111.narinfo"))
		_, err = d.Open("log/x")
		wantEntryError(t, err, filepath.Join(dir, "log"))
		_, err = d.Open("realisations")
		wantEntryError(t, err, filepath.Join(dir, "realisations"))
		for _, rel := range []string{"../" + filepath.Base(o.dir) + "/secret", o.dir + "/secret", "nar/../x", "./nix-cache-info", "", "realisations//x"} {
			if _, err := d.Open(rel); err == nil {
				t.Errorf("Open(%q) succeeded", rel)
			} else {
				noSentinel(t, err)
			}
		}
		if _, err := d.ReadFile("nix-cache-info"); err != nil {
			t.Errorf("a regular file: %v", err)
		}

		// Nothing is listed, created or removed through a symlink.
		_, err = d.List("nar")
		wantEntryError(t, err, filepath.Join(dir, "nar"))
		_, err = d.Create("debuginfo")
		wantEntryError(t, err, filepath.Join(dir, "debuginfo"))
		err = d.WriteFile("nar/a.nar", []byte("replaced"), 0o644)
		wantEntryError(t, err, filepath.Join(dir, "nar"))
		err = d.Remove("nar/a.nar")
		wantEntryError(t, err, filepath.Join(dir, "nar"))
		wantEntryError(t, d.MkdirLayout(), filepath.Join(dir, "nar"))
		if err := d.RemoveStale(); err != nil {
			t.Errorf("RemoveStale: %v", err)
		}
		ok, err := d.Has("00000000000000000000000000000000.narinfo")
		if ok {
			t.Errorf("Has took a symlink for a file")
		}
		wantEntryError(t, err, filepath.Join(dir, "00000000000000000000000000000000.narinfo"))

		var layout []string
		for _, err := range d.CheckLayout() {
			noSentinel(t, err)
			layout = append(layout, err.Error())
		}
		wantLayout := []string{
			filepath.Join(dir, "nar") + ": a symbolic link where a directory must be (not followed)",
			filepath.Join(dir, "debuginfo") + ": a symbolic link where a directory must be (not followed)",
			filepath.Join(dir, "log") + ": a regular file where a directory must be",
		}
		if diff := cmp.Diff(wantLayout, layout); diff != "" {
			t.Errorf("CheckLayout (-want +got):\n%s", diff)
		}

		names, invalid, err := d.NarInfos()
		if err != nil {
			t.Fatal(err)
		}
		var bad []string
		for _, err := range invalid {
			wantEntryError(t, err, err.(*EntryError).Name)
			bad = append(bad, err.Error())
		}
		wantBad := []string{
			filepath.Join(dir, "00000000000000000000000000000000.narinfo") + ": a symbolic link (not followed)",
			filepath.Join(dir, "11111111111111111111111111111111.narinfo") + ": not a regular file but a named pipe (FIFO)",
			filepath.Join(dir, "bad-name.narinfo") + ": not named by a store path's hash part",
		}
		if diff := cmp.Diff(wantBad, bad); diff != "" {
			t.Errorf("invalid narinfos (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"22222222222222222222222222222222.narinfo"}, names); diff != "" {
			t.Errorf("narinfos (-want +got):\n%s", diff)
		}
		_, _, err = d.ReadNarInfo("22222222222222222222222222222222.narinfo", DefaultStoreDir)
		wantEntryError(t, err, filepath.Join(dir, "22222222222222222222222222222222.narinfo"))

		// The entries themselves go, never their targets.
		for _, rel := range []string{"00000000000000000000000000000000.narinfo", "rel.ls", "nar", "debuginfo"} {
			if err := d.Remove(rel); err != nil {
				t.Errorf("Remove(%s): %v", rel, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, rel)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is still there: %v", rel, err)
			}
		}
		if err := d.MkdirLayout(); err == nil {
			t.Errorf("MkdirLayout accepted a regular file log")
		}
		if err := d.Remove("log"); err != nil {
			t.Fatal(err)
		}
		if err := d.MkdirLayout(); err != nil {
			t.Fatal(err)
		}
		if errs := d.CheckLayout(); len(errs) > 0 {
			t.Errorf("CheckLayout after MkdirLayout: %v", errs)
		}
	})
}

// Publishing over a symlink replaces the link, not what it points to.
func TestPublishReplacesSymlink(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Dir) {
		o := newOutside(t)
		dir := t.TempDir()
		d := open(t, dir)
		if err := d.MkdirLayout(); err != nil {
			t.Fatal(err)
		}
		symlink(t, filepath.Join(o.dir, "x.narinfo"), filepath.Join(dir, "x.narinfo"))
		symlink(t, filepath.Join(o.dir, "a.nar"), filepath.Join(dir, "nar", "a.nar"))
		if err := d.WriteFile("x.narinfo", []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := d.Create("nar")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("nar")
		if err := f.Publish("a.nar", 0o644); err != nil {
			t.Fatal(err)
		}
		for rel, want := range map[string]string{"x.narinfo": "new", "nar/a.nar": "nar"} {
			if got, err := d.ReadFile(rel); err != nil || string(got) != want {
				t.Errorf("%s: %q, %v; want %q", rel, got, err, want)
			}
		}
	})
}

// A lookup that cannot use openat2 (a seccomp filter's EPERM, an old
// kernel's ENOSYS) walks instead, and keeps walking.
func TestOpenat2Unavailable(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		d := open(t, t.TempDir())
		writeFile(t, filepath.Join(d.Path(), "f"), "data")
		calls := 0
		d.openat2 = func(int, string, *unix.OpenHow) (int, error) {
			calls++
			return -1, errno
		}
		for range 2 {
			if got, err := d.ReadFile("f"); err != nil || string(got) != "data" {
				t.Errorf("%v: %q, %v", errno, got, err)
			}
		}
		if calls != 1 || !d.fallback.Load() {
			t.Errorf("%v: openat2 called %d times, fallback %v; want once, then the walk", errno, calls, d.fallback.Load())
		}
	}
}

func TestFIFODoesNotBlock(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Dir) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, "nix-cache-info"), 0o644); err != nil {
			t.Fatal(err)
		}
		d := open(t, dir)
		_, _, err := d.ReadInfo()
		wantEntryError(t, err, filepath.Join(dir, "nix-cache-info"))
		if _, err := d.RequireInfo(); err == nil {
			t.Errorf("RequireInfo accepted a FIFO")
		}
		if err := os.Remove(filepath.Join(dir, "nix-cache-info")); err != nil {
			t.Fatal(err)
		}
		if _, err := d.RequireInfo(); !errors.Is(err, ErrNotCache) {
			t.Errorf("RequireInfo: %v, want ErrNotCache", err)
		}
	})
}

// On a file system without flock the lock says so, and holds nothing.
func TestLockUnsupported(t *testing.T) {
	d := open(t, t.TempDir())
	ctx := WithFlock(context.Background(), func(int, int) error { return unix.ENOLCK })
	for _, mode := range []LockMode{Shared, Exclusive, ReadOnly} {
		l, err := d.Lock(ctx, mode, 0)
		if err != nil {
			t.Fatal(err)
		}
		if l.Supported() {
			t.Errorf("mode %d: Supported on a file system without flock", mode)
		}
		l.Release()
	}
	l, err := d.Lock(context.Background(), Exclusive, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Supported() {
		t.Errorf("flock unsupported here")
	}
	l.Release()
}

func TestNarFile(t *testing.T) {
	for url, ok := range map[string]bool{
		"nar/1ds4yba1pmvqxg3rbqm9rgw9mhbgpzj9qi5zkq3zgxjcc7crafv6.nar.zst": true,
		"nar/x.nar":              true,
		"nar/x.nar.xz":           true,
		"nix-cache-info":         false,
		"nar/../nix-cache-info":  false,
		"nar/sub/x.nar":          false,
		"nar/.tmp-x.nar":         false,
		"nar/x":                  false,
		"../nar/x.nar":           false,
		"/nar/x.nar":             false,
		"nar/":                   false,
		"x.narinfo":              false,
		"https://host/nar/x.nar": false,
	} {
		if _, err := NarFile(url); (err == nil) != ok {
			t.Errorf("NarFile(%q): %v, want ok %v", url, err, ok)
		}
	}
}

// RemoveAll removes a directory where a file must be with what it holds,
// and never what a symlink inside points to.
func TestRemoveAll(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Dir) {
		o := newOutside(t)
		dir := t.TempDir()
		tree := filepath.Join(dir, "x.narinfo", "a", "b")
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		symlink(t, o.dir, filepath.Join(tree, "link"))
		writeFile(t, filepath.Join(tree, "f"), "f")
		d := open(t, dir)
		if err := d.RemoveAll("x.narinfo"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "x.narinfo")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("x.narinfo is still there: %v", err)
		}
	})
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"/c/nar/x.nar":           "/c/nar/x.nar",
		"/c/a\nINJECTED.narinfo": `"/c/a\nINJECTED.narinfo"`,
		"/c/\xff.narinfo":        `"/c/\xff.narinfo"`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %s, want %s", in, got, want)
		}
	}
	err := &EntryError{Name: "/c/a\nb", What: "a symbolic link (not followed)"}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("EntryError %q carries a newline", err.Error())
	}
}
