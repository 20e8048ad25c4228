package ciloop

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// cpCache copies a cache directory as files.
func cpCache(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cache")
	nixtest.Run(t, "cp", "-a", src, dst)
	return dst
}

// files returns the relative names of the regular files under dir.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// A gc killed at any moment leaves a cache that verifies with no problem,
// and the next gc finishes the job.
func TestGCKilled(t *testing.T) {
	nixtest.Require(t)
	orig, root := manyCache(t, 1200)
	ref := cpCache(t, orig)
	start := time.Now()
	mustMBC(t, "gc", "--quiet", "--keep", root, ref)
	full := time.Since(start)
	want := files(t, ref)
	t.Logf("gc of 1,201 paths: %v", full)
	// Until four runs were killed midway (the others finished first).
	killed := 0
	for round := 0; killed < 4 && round < 12; round++ {
		dir := cpCache(t, orig)
		cmd := exec.Command(binary(t), "gc", "--quiet", "--keep", root, dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rand.Int64N(int64(full)))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err != nil {
			killed++
		}
		if out, err := mbc(t, nil, "verify", "--quiet", dir); err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("round %d, killed after %v: verify: %v\n%s", round, delay, err, out)
		}
		mustMBC(t, "gc", "--quiet", "--keep", root, dir)
		if d := cmp.Diff(want, files(t, dir)); d != "" {
			t.Errorf("round %d: after a killed gc and a full one (-want +got):\n%s", round, d)
		}
	}
	t.Logf("%d gc runs killed before they finished", killed)
	verifyOK(t, ref)
}

// copy on a cache of real Nix paths: NARs, narinfos (signatures kept),
// listings and debuginfo entries, byte for byte; then Nix substitutes from
// the copy, checking the signatures.
func TestCopyNixCache(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	src := filepath.Join(t.TempDir(), "src")
	mustMBC(t, "--out", src, "--build-closure", "--nar-listing", "--index-debug-info", "--quiet", p["app"], p["junk"])
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "k.sec"), filepath.Join(keys, "k.pub")
	mustMBC(t, "keygen", "copy-test-1", "--secret-key-file", sec, "--public-key-file", pub)
	mustMBC(t, "sign", "--quiet", "--key-file", sec, src)
	srcFiles := files(t, src)

	dst := filepath.Join(t.TempDir(), "dst")
	mustMBC(t, "copy", "--from", src, "--to", dst, p["app"])
	if d := cmp.Diff([]string{"app", "busybox", "hello", "libgreet", "motd"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy of app's closure (-want +got):\n%s", d)
	}
	sameFiles(t, src, dst)
	mustMBC(t, "copy", "--from", src, "--to", dst, "--build-closure", p["app"])
	if d := cmp.Diff([]string{"app", "app", "busybox", "hello", "hello", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy of app's build closure (-want +got):\n%s", d)
	}
	mustMBC(t, "copy", "--from", src, "--to", dst)
	if d := cmp.Diff(srcFiles, files(t, dst)); d != "" {
		t.Errorf("a full copy differs (-src +dst):\n%s", d)
	}
	sameFiles(t, src, dst)
	if d := cmp.Diff(srcFiles, files(t, src)); d != "" {
		t.Errorf("copy changed the source:\n%s", d)
	}
	pubKey, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	out, err := nixtest.FreshStore(t, "nix-store --realise "+p["app"]+" --option substituters file://"+dst+
		" --option trusted-public-keys "+nixtest.ShellQuote(strings.TrimSpace(string(pubKey)))+" --option max-jobs 0")
	if err != nil {
		t.Errorf("substitute from the copy: %v\n%s", err, out)
	}

	// Bad input.
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"copy", "--from", src, "--to", src + "/."}, 2, "same cache"},
		{[]string{"copy", "--from", t.TempDir(), "--to", dst}, 1, "not a binary cache"},
		{[]string{"copy", "--from", src, "--to", dst, "/nix/store/00000000000000000000000000000000-unknown"}, 1, "00000000000000000000000000000000-unknown"},
		{[]string{"copy", "--to", dst}, 2, "--from"},
		{[]string{"gc", "--keep", p["app"], t.TempDir()}, 1, "not a binary cache"},
		{[]string{"gc", "--keep", "/nix/store/00000000000000000000000000000000-unknown", dst}, 1, "nothing was removed"},
		{[]string{"gc", "--keep", "not-a-store-path", dst}, 2, "not-a-store-path"},
		{[]string{"gc", dst}, 2, "--keep"},
	} {
		out, err := mbc(t, nil, tc.args...)
		if exitCode(err) != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("mkbinarycache %s: exit %d, %q; want exit %d saying %q", strings.Join(tc.args, " "), exitCode(err), out, tc.code, tc.says)
		}
	}
	if d := cmp.Diff(srcFiles, files(t, dst)); d != "" {
		t.Errorf("bad input changed the cache:\n%s", d)
	}
}

// sameFiles fails unless every file of dst is byte-identical to src's.
func sameFiles(t *testing.T, src, dst string) {
	t.Helper()
	for _, f := range files(t, dst) {
		a, errA := os.ReadFile(filepath.Join(src, f))
		b, errB := os.ReadFile(filepath.Join(dst, f))
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("%s differs from the source's (%v, %v)", f, errA, errB)
		}
	}
}

// TestGCTime times a gc of a 5,000-path cache that removes a quarter of
// it, as the command runs (MKBINARYCACHE_MEASURE=1).
func TestGCTime(t *testing.T) {
	if os.Getenv(measureEnv) != "1" {
		t.Skipf("a measurement: set %s=1", measureEnv)
	}
	nixtest.Require(t)
	dir, root := manyCache(t, 5000)
	for _, dry := range []bool{true, false} {
		args := []string{"gc", "--quiet", "--keep", root, dir}
		if dry {
			args = append(args[:1], append([]string{"--dry-run"}, args[1:]...)...)
		}
		cmd := exec.Command(binary(t), args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		wall := time.Since(start)
		u := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		t.Logf("dry run %v: %v wall, %v CPU: %s", dry, wall.Round(time.Millisecond), u.Round(time.Millisecond), strings.TrimSpace(string(out)))
	}
	verifyOK(t, dir)
}
