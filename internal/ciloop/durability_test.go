package ciloop

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// measureEnv turns on the tests that only measure (minutes on 2 cores).
const measureEnv = "MKBINARYCACHE_MEASURE"

// docStore makes a store directory of its own holding every directory of
// /usr/share/doc as a store path (the MANY closure of the benchmarks:
// about 700 paths, 110 MB), and returns its closure.
func docStore(t testing.TB) (string, closure.Closure) {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "doc")
	nixtest.Run(t, "cp", "-a", "/usr/share/doc", src)
	storeDir := filepath.Join(base, "store")
	if err := os.Mkdir(storeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var c closure.Closure
	for _, e := range entries {
		sum := sha256.Sum256([]byte(e.Name()))
		p := storeDir + "/" + nixbase32.EncodeToString(sum[:20]) + "-" + e.Name()
		if err := os.Rename(filepath.Join(src, e.Name()), p); err != nil {
			t.Fatal(err)
		}
		c = append(c, closure.Path{StorePath: p})
	}
	sort.Slice(c, func(i, j int) bool { return c[i].StorePath < c[j].StorePath })
	return storeDir, c
}

// TestDurabilityCost times writing the MANY closure with and without
// Options.Durable (one syncfs per publishing round), interleaved, and
// reports the medians.
func TestDurabilityCost(t *testing.T) {
	if os.Getenv(measureEnv) != "1" {
		t.Skipf("a measurement: set %s=1", measureEnv)
	}
	nixtest.Require(t)
	storeDir, c := docStore(t)
	times := map[bool][]time.Duration{}
	syncs := 0
	for range 3 {
		for _, durable := range []bool{false, true} {
			dir := filepath.Join(t.TempDir(), "cache")
			w, err := cache.NewWriter(dir, cache.Options{StoreDir: storeDir, Compression: compress.Zstd,
				Level: compress.DefaultLevel, Durable: durable, LockWait: -1})
			if err != nil {
				t.Fatal(err)
			}
			// Start each run with no dirty data of the last one.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := cachedir.SyncFS(dir); err != nil {
				t.Fatal(err)
			}
			st, err := w.Write(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			times[durable] = append(times[durable], st.Elapsed)
			if durable {
				syncs = st.Syncs
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	med := func(d []time.Duration) time.Duration {
		d = append([]time.Duration(nil), d...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	off, on := med(times[false]), med(times[true])
	t.Logf("%d paths: durable off %v, on %v (%d syncfs): %+.1f%%; all runs off %v on %v",
		len(c), off, on, syncs, 100*(float64(on)/float64(off)-1), times[false], times[true])
}
