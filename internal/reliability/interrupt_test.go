package reliability

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// TestInterrupted kills the binary with SIGKILL at random moments while it
// writes a cache (--jobs 2, with listings), again and again into the same directory. After
// every kill, no narinfo may point to a missing or partial NAR; the run
// after the last kill completes the cache, removes the killed runs'
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

	// An uninterrupted run: the reference, and the time a run takes.
	ref := filepath.Join(t.TempDir(), "cache")
	start := time.Now()
	run(t, bin, args(ref)...)
	full := time.Since(start)
	t.Logf("an uninterrupted run takes %v", full.Round(time.Millisecond))

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	var dir string
	kills, finished, leftovers := 0, 0, 0
	// Rounds of 6 runs into a new directory, each killed at a random moment
	// within 0.8x of a full run's time (a re-run skips finished paths, so
	// later runs of a round are shorter and often finish), then completed.
	for round := range 6 {
		dir = filepath.Join(t.TempDir(), "cache")
		for i := range 6 {
			cmd := exec.Command(bin, args(dir)...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			delay := time.Duration(rng.Int63n(int64(full) * 8 / 10))
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			if err == nil {
				finished++
			} else if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
				kills++
			} else {
				t.Fatalf("round %d, run %d: %v", round, i, err)
			}
			leftovers += len(tmpFiles(dir))
			if _, err := os.Stat(filepath.Join(dir, "nix-cache-info")); err != nil {
				continue // killed before it wrote anything
			}
			if p := verifyCache(t, dir, true); len(p) > 0 {
				t.Fatalf("after a kill at %v (round %d, run %d), the cache has problems:\n%s", delay, round, i, strings.Join(p, "\n"))
			}
		}
		run(t, bin, args(dir)...)
		if p := verifyCache(t, dir, false); len(p) > 0 {
			t.Fatalf("round %d: the completed cache has problems:\n%s", round, strings.Join(p, "\n"))
		}
		if left := tmpFiles(dir); len(left) > 0 {
			t.Errorf("round %d: temporary files of killed runs are left: %q", round, left)
		}
		if d := diffSums(treeSums(t, ref), treeSums(t, dir)); d != "" {
			t.Errorf("round %d: the cache differs from an uninterrupted run's:\n%s", round, d)
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
