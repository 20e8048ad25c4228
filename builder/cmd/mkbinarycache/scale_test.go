package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// ScaleEnv turns on the scale measurements: they take minutes and GiBs of
// disk, and report figures rather than pass or fail on timings.
//
//	MKBINARYCACHE_SCALE=1 go test -run TestScale -v -timeout 60m ./builder/cmd/mkbinarycache
//
// MKBINARYCACHE_SCALE_PATHS (default "1000 2500 5000") sets the closure
// sizes and MKBINARYCACHE_SCALE_GIB (default 4) the size of the big file.
const ScaleEnv = "MKBINARYCACHE_SCALE"

type measure struct {
	wall    time.Duration
	user    time.Duration
	sys     time.Duration
	rssMiB  float64
	maxFDs  int
	outSize int64
	stderr  string // what the command printed there
}

func (m measure) String() string {
	return fmt.Sprintf("wall %.2fs, user %.2fs, sys %.2fs, peak RSS %.1f MiB, max open fds %d, cache %.1f MiB",
		m.wall.Seconds(), m.user.Seconds(), m.sys.Seconds(), m.rssMiB, m.maxFDs, float64(m.outSize)/(1<<20))
}

// measureRun runs the binary, failing the test unless it exits 0, and
// samples its open file descriptors and its peak RSS (VmHWM) every 5 ms;
// out is the directory whose size it reports.
func measureRun(t *testing.T, bin, out string, args ...string) measure {
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
						var kib int64
						fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
						if kib > hwmKiB.Load() {
							hwmKiB.Store(kib)
						}
					}
				}
			}
		}
	}()
	// Scale runs are opt-in and long: bounded well above what they take.
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
	filepath.Walk(out, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			m.outSize += fi.Size()
		}
		return nil
	})
	return m
}

func scaleOn(t *testing.T) {
	if os.Getenv(ScaleEnv) != "1" {
		t.Skipf("scale measurements: set %s=1", ScaleEnv)
	}
	nixtest.Require(t)
}

// TestScaleManyPaths writes caches of closures of 1000 to 5000+ small store
// paths (from an attrs file, as in a derivation), at the default core count.
func TestScaleManyPaths(t *testing.T) {
	scaleOn(t)
	bin := binary(t)
	sizes := strings.Fields(os.Getenv("MKBINARYCACHE_SCALE_PATHS"))
	if len(sizes) == 0 {
		sizes = []string{"1000", "2500", "5000"}
	}
	for _, s := range sizes {
		var n int
		fmt.Sscan(s, &n)
		start := time.Now()
		paths := smallPaths(t, n)
		t.Logf("%d paths: nix-store --add took %v", n, time.Since(start).Round(time.Millisecond))
		pathInfo := nixtest.Run(t, "nix", append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, paths...)...)
		attrsFile := writeTemp(t, "attrs.json", `{"closure":`+pathInfo+`}`)
		for _, comp := range []string{"zstd", "xz"} {
			out := filepath.Join(t.TempDir(), "cache")
			m := measureRun(t, bin, out, "--quiet", "--compression", comp, "--attrs", attrsFile, "--out", out)
			t.Logf("SCALE paths=%d %s: %v (%.2f ms/path)", n, comp, m, float64(m.wall.Microseconds())/1000/float64(n))
			if testkit.CheckCache(t, out); t.Failed() {
				t.FailNow()
			}
		}
	}
}

// TestScaleBigFile writes the cache of one path holding a multi-GiB file:
// sparse (zeros: the dump and hash dominate, compression is cheap) and, for
// comparison, 1 GiB of incompressible data. The store is a fake store dir
// (--store-dir, --graph): Nix would copy the sparse file densely.
func TestScaleBigFile(t *testing.T) {
	scaleOn(t)
	bin := binary(t)
	gib := 4
	if v := os.Getenv("MKBINARYCACHE_SCALE_GIB"); v != "" {
		fmt.Sscan(v, &gib)
	}
	s := testkit.NewStore(t)
	sparse, dense := s.Path("sparse"), s.Path("dense")
	testkit.Must(t, os.MkdirAll(sparse, 0o755))
	f, err := os.Create(sparse + "/big")
	testkit.Must(t, err)
	f.Truncate(int64(gib) << 30)
	f.WriteAt([]byte("end"), int64(gib)<<30-3)
	f.Close()
	testkit.Must(t, os.MkdirAll(dense, 0o755))
	f, err = os.Create(dense + "/big")
	testkit.Must(t, err)
	for i := range 64 {
		f.Write(pseudoRandom(int64(i), 16<<20))
	}
	f.Close()

	for _, c := range []struct{ name, path string }{{fmt.Sprintf("sparse %d GiB", gib), sparse}, {"random 1 GiB", dense}} {
		graph := writeTemp(t, "graph", c.path+"\n\n0\n")
		for _, comp := range []string{"zstd", "none"} {
			out := filepath.Join(t.TempDir(), "cache")
			m := measureRun(t, bin, out, "--quiet", "--compression", comp, "--store-dir", s.Dir, "--graph", graph, "--out", out)
			t.Logf("SCALE %s %s: %v", c.name, comp, m)
			os.RemoveAll(out)
		}
	}
}
