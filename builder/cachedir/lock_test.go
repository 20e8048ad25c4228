package cachedir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A killed run leaves temporary files; the next command to lock the cache
// alone removes them, but not while another holds it, whose files are live.
func TestAcquireRemovesStaleTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := open(t, dir)
	if err := d.Init(Info{StoreDir: DefaultStoreDir}); err != nil {
		t.Fatal(err)
	}
	stale := []string{
		filepath.Join(dir, ".tmp-123"),
		filepath.Join(dir, "nar", ".tmp-456"),
		filepath.Join(dir, "debuginfo", ".tmp-789"),
	}
	keep := filepath.Join(dir, "nar", "tmp-not-ours")
	other, err := d.Lock(ctx, Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(stale, keep) {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	l, err := d.Lock(ctx, Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	for _, f := range stale {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("removed %s while another command held the cache: %v", f, err)
		}
	}
	other.Release()

	l, err = d.Lock(ctx, Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	for _, f := range stale {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("stale %s was not removed", f)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("removed %s, which is not a temporary file of ours", keep)
	}
}

// Shared holders coexist; an exclusive holder keeps both kinds out for the
// bounded wait, and lets them in once released.
func TestAcquireModes(t *testing.T) {
	ctx := context.Background()
	d := open(t, t.TempDir())
	a, err := d.Lock(ctx, Shared, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Lock(ctx, Shared, 0)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	if _, err := d.Lock(ctx, Exclusive, 50*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Errorf("exclusive beside shared: %v, want ErrBusy", err)
	}
	a.Release()
	b.Release()

	x, err := d.Lock(ctx, Exclusive, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock(ctx, Shared, 50*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Errorf("shared beside exclusive: %v, want ErrBusy", err)
	}
	// A zero wait is no bound: the context ends it, not ErrBusy.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := d.Lock(short, Shared, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shared beside exclusive, no bound: %v, want the context's end", err)
	}
	go func() { time.Sleep(50 * time.Millisecond); x.Release() }()
	s, err := d.Lock(ctx, Shared, 5*time.Second)
	if err != nil {
		t.Fatalf("shared after release: %v", err)
	}
	s.Release()
}

func TestInfo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Info
	}{
		{"StoreDir: /nix/store\n", Info{StoreDir: "/nix/store"}},
		{"StoreDir:/nix/store/ \nWantMassQuery: 1\nPriority: 40\n", Info{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40}},
		{"garbage\nFuture: x\nStoreDir: /opt/store\n", Info{StoreDir: "/opt/store"}},
		{"", Info{}},
	} {
		if got := ParseInfo([]byte(tc.in)); got != tc.want {
			t.Errorf("ParseInfo(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	i := Info{StoreDir: "/nix/store", WantMassQuery: true, Priority: 30}
	if got := ParseInfo(i.Bytes()); got != i {
		t.Errorf("round trip: %+v, want %+v", got, i)
	}
	dir := t.TempDir()
	d := open(t, dir)
	if err := d.Init(Info{StoreDir: "/nix/store"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Init(Info{StoreDir: "/opt/store"}); err == nil {
		t.Errorf("Init accepted another store dir")
	}
	for _, d := range Dirs {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
}
