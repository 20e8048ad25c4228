package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// docStore makes a store directory of its own holding every directory of
// /usr/share/doc as a store path (the MANY closure of the benchmarks:
// about 700 paths, 110 MB), and returns it and its closure.
func docStore(t testing.TB) (*testkit.Store, closure.Closure) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "doc")
	nixtest.Run(t, "cp", "-a", "/usr/share/doc", src)
	s := testkit.NewStore(t)
	entries, err := os.ReadDir(src)
	testkit.Must(t, err)
	var c closure.Closure
	for _, e := range entries {
		p := s.Path(e.Name())
		testkit.Must(t, os.Rename(filepath.Join(src, e.Name()), p))
		c = append(c, closure.Path{StorePath: p})
	}
	sort.Slice(c, func(i, j int) bool { return c[i].StorePath < c[j].StorePath })
	return s, c
}

// TestDurabilityCost times writing the MANY closure with and without
// Options.Durable (one syncfs per publishing round), interleaved, and
// reports the medians.
func TestDurabilityCost(t *testing.T) {
	testkit.Measure(t)
	nixtest.Require(t)
	s, c := docStore(t)
	times := map[bool][]time.Duration{}
	syncs := 0
	for range 3 {
		for _, durable := range []bool{false, true} {
			dir := filepath.Join(t.TempDir(), "cache")
			o := s.Options(compress.Zstd)
			o.Durable, o.LockWait = durable, -1
			w, err := cache.NewWriter(dir, o)
			testkit.Must(t, err)
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
	// The time the command spends in syncfs, an upper bound of what
	// durability costs (the workers go on meanwhile); strace with seccomp
	// stops it at syncfs calls only.
	graph := graphFile(t, c)
	trace := filepath.Join(t.TempDir(), "strace")
	start := time.Now()
	out, err := exec.Command("strace", "-f", "--seccomp-bpf", "-T", "-o", trace, "-e", "trace=syncfs", binary(t),
		"--out", filepath.Join(t.TempDir(), "cache"), "--graph", graph, "--store-dir", s.Dir, "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	wall := time.Since(start)
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var inSync time.Duration
	calls := 0
	for _, m := range regexp.MustCompile(`syncfs\(.*<([0-9.]+)>`).FindAllStringSubmatch(string(data), -1) {
		secs, _ := strconv.ParseFloat(m[1], 64)
		inSync += time.Duration(secs * float64(time.Second))
		calls++
	}
	t.Logf("the command: %v, of which %v in %d syncfs calls (%.1f%%)", wall.Round(time.Millisecond), inSync.Round(time.Millisecond), calls, 100*float64(inSync)/float64(wall))

	med := func(d []time.Duration) time.Duration {
		d = append([]time.Duration(nil), d...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	off, on := med(times[false]), med(times[true])
	t.Logf("%d paths: durable off %v, on %v (%d syncfs): %+.1f%%; all runs off %v on %v",
		len(c), off, on, syncs, 100*(float64(on)/float64(off)-1), times[false], times[true])
}

// TestCopyTime times a copy of the MANY closure's cache (about 700 paths,
// 60 MB of zstd NARs) by the command, and checks it file by file.
func TestCopyTime(t *testing.T) {
	testkit.Measure(t)
	nixtest.Require(t)
	s, c := docStore(t)
	src := filepath.Join(t.TempDir(), "src")
	o := s.Options(compress.Zstd)
	o.NarListing, o.Durable, o.LockWait = true, true, -1
	testkit.WriteCache(t, src, c, o)
	for range 3 {
		dst := filepath.Join(t.TempDir(), "dst")
		m := measureRun(t, binary(t), dst, "copy", "--quiet", "--from", src, "--to", dst)
		t.Logf("copy: %v: %s", m, strings.TrimSpace(m.stderr))
		sameFiles(t, src, dst)
	}
}
