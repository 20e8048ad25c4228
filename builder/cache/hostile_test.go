package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// A writer writes nothing through a symlink in the cache: a layout
// directory or a narinfo that is one stops it, named, and what it points
// to stays as it was.
func TestWriteRefusesSymlinks(t *testing.T) {
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app"}})
	o := s.Options(compress.Zstd)
	o.NarListing, o.IndexDebugInfo, o.LockWait = true, true, -1
	for _, entry := range []string{"nar", "debuginfo", "log", "realisations", cachedir.NarInfoName(s.Path("app"))} {
		t.Run(entry, func(t *testing.T) {
			out := testkit.NewOutside(t, "secret")
			dir := t.TempDir()
			testkit.Must(t, os.Symlink(out.Dir, filepath.Join(dir, entry)))
			if strings.HasSuffix(entry, ".narinfo") {
				testkit.Must(t, os.Remove(filepath.Join(dir, entry)))
				testkit.Must(t, os.Symlink(out.Path("secret"), filepath.Join(dir, entry)))
			}
			w, err := cache.NewWriter(dir, o)
			testkit.Must(t, err)
			_, err = w.Write(context.Background(), c, nil)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, entry)+": a symbolic link") {
				t.Errorf("write with %s a symlink: %v, want an error naming it", entry, err)
			}
			if err != nil {
				testkit.NoSentinel(t, err.Error())
			}
		})
	}
}

// On a file system without flock a writer warns, and writes.
func TestWriteWithoutFlockWarns(t *testing.T) {
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app"}})
	o := s.Options(compress.Zstd)
	w, err := cache.NewWriter(t.TempDir(), o)
	testkit.Must(t, err)
	ctx := cachedir.WithFlock(context.Background(), func(int, int) error { return syscall.ENOLCK })
	var warned bool
	if _, err := w.Write(ctx, c, func(e cache.Event) {
		warned = warned || e.Kind == cache.Warning && strings.Contains(e.Msg, "no flock")
	}); err != nil {
		t.Fatal(err)
	}
	if !warned {
		t.Errorf("no warning of the missing lock")
	}
}
