package main_test

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// Reliability of the real binary with real Nix: runs killed at random
// moments, and the same cache whatever the core count.

// pseudoRandom is incompressible, reproducible content.
func pseudoRandom(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// smallPaths adds n small store paths to Nix's store (a text file and a
// symlink each).
func smallPaths(t testing.TB, n int) []string {
	paths := make([]testkit.Path, n)
	for i := range paths {
		paths[i] = testkit.Path{Name: fmt.Sprintf("rel-small-%05d", i),
			Files:    map[string]string{"share/data": strings.Repeat(fmt.Sprintf("path %d\n", i), 1+i%50)},
			Symlinks: map[string]string{"link": "share/data"}}
	}
	return testkit.AddToNix(t, paths...)
}

// blobPath adds one store path holding size bytes of incompressible data.
func blobPath(t testing.TB, name string, size int) string {
	return testkit.AddToNix(t, testkit.Path{Name: "rel-" + name,
		Files: map[string]string{"blob": string(pseudoRandom(int64(size), size))}})[0]
}

// TestDeterministic: the binary writes the same cache, byte for byte (every
// file, name, mode and symlink), for --jobs 1, 2 and 8 (with as many
// encoder threads) and across runs, for every compression method, on the
// fixture plus paths larger than one compressor block.
func TestDeterministic(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	paths := append([]string{fx.Hello, blobPath(t, "blob-3m", 3<<20)}, smallPaths(t, 40)...)
	for _, m := range []string{"zstd", "xz", "bzip2", "none"} {
		t.Run(m, func(t *testing.T) {
			var first map[string]string
			var firstName string
			for _, jobs := range []int{1, 2, 8, 1, 8} {
				for _, extra := range [][]string{nil, {"--nar-listing"}} {
					if extra != nil && jobs != 8 {
						continue
					}
					name := fmt.Sprintf("--jobs %d %v", jobs, extra)
					dir := filepath.Join(t.TempDir(), "cache")
					args := append([]string{"--quiet", "--compression", m, "--jobs", fmt.Sprint(jobs),
						"--threads", fmt.Sprint(jobs), "--out", dir}, extra...)
					mkbinarycache(t, append(args, paths...)...)
					tree := testkit.Tree(t, dir)
					if extra != nil {
						// The listings are extra files; the rest must not change.
						for k := range tree {
							if filepath.Ext(k) == ".ls" {
								delete(tree, k)
							}
						}
					}
					if first == nil {
						first, firstName = tree, name
						continue
					}
					if d := cmp.Diff(first, tree); d != "" {
						t.Errorf("%s and %s differ (-%s +%s):\n%s", firstName, name, firstName, name, d)
					}
				}
			}
		})
	}
}

// TestInterrupted kills the binary with SIGKILL at random moments while it
// writes a cache (--jobs 2, with listings), again and again into the same
// directory. After every kill, verify finds no problem at all: no narinfo
// points to a missing or partial NAR, none names a reference without a
// narinfo (narinfos are published after those of their references). The
// run after the last kill completes the cache, removes the killed runs'
// temporary files, and leaves the very bytes an uninterrupted run writes;
// and a fresh store substitutes from it.
func TestInterrupted(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	bin := binary(t)
	paths := append([]string{fx.Hello, blobPath(t, "blob-24m", 24<<20), blobPath(t, "blob-8m", 8<<20)},
		smallPaths(t, 40)...)
	args := func(dir string) []string {
		return append([]string{"--quiet", "--jobs", "2", "--nar-listing", "--out", dir}, paths...)
	}

	// An uninterrupted run: the reference, and how many files a run makes.
	ref := filepath.Join(t.TempDir(), "cache")
	mkbinarycache(t, args(ref)...)
	total := countFiles(ref)

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	var dir string
	kills, finished, leftovers := 0, 0, 0
	// Rounds of 6 runs into a new directory, each killed at a random moment
	// of its progress: once a random number of the files still to come
	// exist (by files, not time: a loaded machine makes timing useless),
	// then completed.
	for round := range 6 {
		dir = filepath.Join(t.TempDir(), "cache")
		for i := range 6 {
			before := countFiles(dir)
			run := proc.Start(t, exec.Command(bin, args(dir)...), fmt.Sprintf("round %d, run %d", round, i))
			if before < total {
				target := before + rng.Intn(total-before)
				// Poll until enough files exist or the run exits by itself;
				// Done stays closed, so the Wait below never blocks on a
				// value this loop took.
			wait:
				for countFiles(dir) <= target {
					select {
					case <-run.Done():
						break wait
					case <-time.After(time.Millisecond):
					}
				}
				run.Kill()
			}
			err := run.Wait(t, proc.Timeout)
			if err == nil {
				finished++
			} else if proc.Killed(err) {
				kills++
			} else {
				t.Fatalf("round %d, run %d: %v", round, i, err)
			}
			leftovers += len(testkit.CheckKilledCache(t, dir))
			if t.Failed() {
				t.Fatalf("after a kill (round %d, run %d), the cache has problems", round, i)
			}
		}
		mkbinarycache(t, args(dir)...)
		if testkit.CheckCache(t, dir); t.Failed() {
			t.Fatalf("round %d: the completed cache is wrong", round)
		}
		if d := cmp.Diff(testkit.Tree(t, ref), testkit.Tree(t, dir)); d != "" {
			t.Errorf("round %d: the cache differs from an uninterrupted run's (-uninterrupted +killed):\n%s", round, d)
		}
	}
	t.Logf("%d runs killed, %d finished before the kill; %d temporary files left by kills, all removed by the next run", kills, finished, leftovers)
	if kills < 10 {
		t.Errorf("only %d of 36 runs were killed before they finished", kills)
	}

	url := "file://" + dir
	script := "nix-store -r " + strings.Join(paths, " ") + " --option max-jobs 0 " +
		strings.Join(nixtest.SubstituterOpts(url), " ") +
		" && nix-store --verify-path " + strings.Join(paths, " ") + " && " + fx.Hello + "/bin/hello"
	out, err := nixtest.FreshStore(t, script)
	if err != nil {
		t.Fatalf("substitute: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Hello from libgreet!") {
		t.Errorf("hello did not run after substitution:\n%s", out)
	}
}

// countFiles counts the entries of a cache directory and of its nar/: how
// far a run has got (temporary files included).
func countFiles(dir string) int {
	n := 0
	for _, d := range []string{dir, filepath.Join(dir, "nar")} {
		entries, _ := os.ReadDir(d)
		n += len(entries)
	}
	return n
}
