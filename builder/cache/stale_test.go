package cache

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
)

// A killed run leaves temporary files; the next run removes them, unless
// another run holds the cache, whose temporary files are live.
func TestStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, StoreDir: "/nix/store", Compression: compress.Zstd, Level: compress.DefaultLevel}
	if _, err := Write(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	stale := []string{
		filepath.Join(dir, ".tmp-123"),
		filepath.Join(dir, "nar", ".tmp-456"),
		filepath.Join(dir, "debuginfo", ".tmp-789"),
	}
	keep := filepath.Join(dir, "nar", "tmp-not-ours")
	for _, f := range append(stale, keep) {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Another run holds the cache: nothing is removed.
	fh, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range stale {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("removed %s while another run held the cache: %v", f, err)
		}
	}
	fh.Close()

	// Alone: the stale files go, others stay.
	if _, err := Write(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range stale {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("stale %s was not removed", f)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("removed %s, which is not a temporary file of ours", keep)
	}
}
