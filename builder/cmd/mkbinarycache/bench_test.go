package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// The measurements of the command at scale are benchmarks: they run only
// when asked for, take minutes and GiBs of disk, and report figures with
// b.ReportMetric rather than pass or fail on timings. One run of each is
// the measurement:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./builder/cmd/mkbinarycache
//
// MKBINARYCACHE_SCALE_PATHS (default "1000 2500 5000") sets the closure
// sizes of BenchmarkScaleManyPaths and MKBINARYCACHE_SCALE_GIB (default 4)
// the size of BenchmarkScaleBigFile's sparse file.

// measure is what one run of the command cost.
type measure struct {
	wall, user, sys time.Duration
	rssMiB          float64
	maxFDs          int
	outSize         int64
	stderr          string // what the command printed there
}

// report adds a run's figures to the benchmark's, per run.
func (m measure) report(b *testing.B, runs int) {
	b.ReportMetric(m.user.Seconds()/float64(runs), "user-s/op")
	b.ReportMetric(m.sys.Seconds()/float64(runs), "sys-s/op")
	b.ReportMetric(m.rssMiB, "peak-RSS-MiB")
	b.ReportMetric(float64(m.maxFDs), "max-fds")
	b.ReportMetric(float64(m.outSize)/(1<<20), "cache-MiB")
}

// add sums the times of two runs, and keeps the peaks.
func (m measure) add(n measure) measure {
	m.wall += n.wall
	m.user += n.user
	m.sys += n.sys
	m.rssMiB = max(m.rssMiB, n.rssMiB)
	m.maxFDs = max(m.maxFDs, n.maxFDs)
	m.outSize = n.outSize
	m.stderr = n.stderr
	return m
}

// measureRun runs the binary, failing unless it exits 0, and samples its
// open file descriptors and its peak RSS (VmHWM) every 5 ms; out is the
// directory whose size it reports.
func measureRun(t testing.TB, bin, out string, args ...string) measure {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	run := proc.Start(t, cmd, "mkbinarycache "+strings.Join(args, " "))
	var maxFDs, hwmKiB atomic.Int64
	done := make(chan struct{})
	go func() {
		proc := fmt.Sprintf("/proc/%d/", cmd.Process.Pid)
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if ents, err := os.ReadDir(proc + "fd"); err == nil && int64(len(ents)) > maxFDs.Load() {
				maxFDs.Store(int64(len(ents)))
			}
			// VmHWM, the peak RSS of the running image. rusage's maxrss
			// would count the test process's RSS at fork time too.
			if status, err := os.ReadFile(proc + "status"); err == nil {
				for _, line := range strings.Split(string(status), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
						if err == nil && kib > hwmKiB.Load() {
							hwmKiB.Store(kib)
						}
					}
				}
			}
		}
	}()
	// Bounded well above what the runs take.
	err := run.Wait(t, 6*proc.Timeout)
	close(done)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	m := measure{
		wall:   time.Since(start),
		user:   cmd.ProcessState.UserTime(),
		sys:    cmd.ProcessState.SystemTime(),
		rssMiB: float64(hwmKiB.Load()) / 1024,
		maxFDs: int(maxFDs.Load()),
		stderr: stderr.String(),
	}
	err = filepath.Walk(out, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			m.outSize += fi.Size()
		}
		return err
	})
	testkit.Must(t, err)
	return m
}

// runs measures b.N runs of the command, each given a fresh out directory
// by args, and reports them.
func runs(b *testing.B, bin string, args func(out string) []string) measure {
	b.Helper()
	var total measure
	for b.Loop() {
		out := filepath.Join(b.TempDir(), "cache")
		total = total.add(measureRun(b, bin, out, args(out)...))
	}
	total.report(b, b.N)
	return total
}

// BenchmarkScaleManyPaths writes caches of closures of 1000 to 5000+
// small store paths (from an attrs file, as in a derivation).
func BenchmarkScaleManyPaths(b *testing.B) {
	nixtest.Require(b)
	bin := binary(b)
	sizes := strings.Fields(os.Getenv("MKBINARYCACHE_SCALE_PATHS"))
	if len(sizes) == 0 {
		sizes = []string{"1000", "2500", "5000"}
	}
	for _, s := range sizes {
		n, err := strconv.Atoi(s)
		testkit.Must(b, err)
		paths := smallPaths(b, n)
		pathInfo := nixtest.Run(b, "nix", append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, paths...)...)
		attrsFile := writeTemp(b, "attrs.json", `{"closure":`+pathInfo+`}`)
		for _, comp := range []string{"zstd", "xz"} {
			b.Run(fmt.Sprintf("paths=%d/%s", n, comp), func(b *testing.B) {
				m := runs(b, bin, func(out string) []string {
					return []string{"--quiet", "--compression", comp, "--attrs", attrsFile, "--out", out}
				})
				b.ReportMetric(float64(m.wall.Milliseconds())/float64(b.N*n), "ms/path")
			})
		}
	}
}

// BenchmarkScaleBigFile writes the cache of one path holding a multi-GiB
// file: sparse (zeros: the dump and hash dominate, compression is cheap)
// and, for comparison, 1 GiB of incompressible data. The store is a fake
// store directory (--store-dir, --graph): Nix would copy the sparse file
// densely.
func BenchmarkScaleBigFile(b *testing.B) {
	nixtest.Require(b)
	bin := binary(b)
	gib := 4
	if v := os.Getenv("MKBINARYCACHE_SCALE_GIB"); v != "" {
		var err error
		gib, err = strconv.Atoi(v)
		testkit.Must(b, err)
	}
	s := testkit.NewStore(b)
	sparse, dense := s.Path("sparse"), s.Path("dense")
	testkit.Must(b, os.MkdirAll(sparse, 0o755))
	f, err := os.Create(sparse + "/big")
	testkit.Must(b, err)
	testkit.Must(b, f.Truncate(int64(gib)<<30))
	_, err = f.WriteAt([]byte("end"), int64(gib)<<30-3)
	testkit.Must(b, err)
	testkit.Must(b, f.Close())
	testkit.Must(b, os.MkdirAll(dense, 0o755))
	f, err = os.Create(dense + "/big")
	testkit.Must(b, err)
	for i := range 64 {
		_, err := f.Write(pseudoRandom(int64(i), 16<<20))
		testkit.Must(b, err)
	}
	testkit.Must(b, f.Close())

	for _, c := range []struct{ name, path string }{{fmt.Sprintf("sparse-%dGiB", gib), sparse}, {"random-1GiB", dense}} {
		graph := writeTemp(b, "graph", c.path+"\n\n0\n")
		for _, comp := range []string{"zstd", "none"} {
			b.Run(c.name+"/"+comp, func(b *testing.B) {
				runs(b, bin, func(out string) []string {
					return []string{"--quiet", "--compression", comp, "--store-dir", s.Dir, "--graph", graph, "--out", out}
				})
			})
		}
	}
}

// BenchmarkDurability writes the MANY closure (/usr/share/doc as store
// paths) with and without Options.Durable (one syncfs per publishing
// round); "syncfs-s/op" is the time the command spends in syncfs, an upper
// bound of what durability costs (the workers go on meanwhile).
func BenchmarkDurability(b *testing.B) {
	nixtest.Require(b)
	s, c := docStore(b)
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			syncs := 0
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "cache")
				o := s.Options(compress.Zstd)
				o.Durable = durable
				w, err := cache.NewWriter(dir, o)
				testkit.Must(b, err)
				// Start each run with no dirty data of the last one.
				testkit.Must(b, os.MkdirAll(dir, 0o755))
				testkit.Must(b, testkit.OpenCache(b, dir).SyncFS())
				b.StartTimer()
				st, err := w.Write(context.Background(), c, nil)
				testkit.Must(b, err)
				syncs += st.Syncs
			}
			b.ReportMetric(float64(syncs)/float64(b.N), "syncfs/op")
		})
	}
	b.Run("syncfs-time", func(b *testing.B) {
		graph := graphFile(b, c)
		var inSync time.Duration
		for b.Loop() {
			trace := filepath.Join(b.TempDir(), "strace")
			// strace with seccomp stops the command at syncfs calls only.
			out, err := exec.Command("strace", "-f", "--seccomp-bpf", "-T", "-o", trace, "-e", "trace=syncfs", binary(b),
				"--out", filepath.Join(b.TempDir(), "cache"), "--graph", graph, "--store-dir", s.Dir, "--quiet").CombinedOutput()
			if err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			data, err := os.ReadFile(trace)
			testkit.Must(b, err)
			for _, m := range regexp.MustCompile(`syncfs\(.*<([0-9.]+)>`).FindAllStringSubmatch(string(data), -1) {
				secs, err := strconv.ParseFloat(m[1], 64)
				testkit.Must(b, err)
				inSync += time.Duration(secs * float64(time.Second))
			}
		}
		b.ReportMetric(inSync.Seconds()/float64(b.N), "syncfs-s/op")
	})
}

// BenchmarkCopy copies the MANY closure's cache (about 700 paths, 60 MB of
// zstd NARs) with the command, and checks it file by file.
func BenchmarkCopy(b *testing.B) {
	nixtest.Require(b)
	s, c := docStore(b)
	src := filepath.Join(b.TempDir(), "src")
	o := s.Options(compress.Zstd)
	o.NarListing, o.Durable = true, true
	testkit.WriteCache(b, src, c, o)
	var last string
	runs(b, binary(b), func(dst string) []string {
		last = dst
		return []string{"copy", "--quiet", "--from", src, "--to", dst}
	})
	sameFiles(b, src, last)
}

// BenchmarkGC collects a 5,000-path cache, removing a quarter of it, with
// the command; the dry run first.
func BenchmarkGC(b *testing.B) {
	nixtest.Require(b)
	for _, dry := range []bool{true, false} {
		b.Run(fmt.Sprintf("dry-run=%v", dry), func(b *testing.B) {
			var total measure
			for b.Loop() {
				b.StopTimer()
				dir, root := manyCache(b, 5000)
				args := []string{"gc", "--quiet", "--keep", root, dir}
				if dry {
					args = append(args, "--dry-run")
				}
				b.StartTimer()
				total = total.add(measureRun(b, binary(b), dir, args...))
				b.StopTimer()
				mkbinarycache(b, "verify", dir)
				b.StartTimer()
			}
			total.report(b, b.N)
		})
	}
}

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
