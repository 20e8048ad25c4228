package main_test

import (
	"fmt"
	"math/rand/v2"
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

// cpCache copies a cache directory as files.
func cpCache(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cache")
	nixtest.Run(t, "cp", "-a", src, dst)
	return dst
}

// A gc killed at any moment leaves a cache that verifies with no problem,
// and the next gc finishes the job.
func TestGCKilled(t *testing.T) {
	nixtest.Require(t)
	orig, root := manyCache(t, 1200)
	ref := cpCache(t, orig)
	start := time.Now()
	mkbinarycache(t, "gc", "--quiet", "--keep", root, ref)
	full := time.Since(start)
	want := testkit.Files(t, ref)
	t.Logf("gc of 1,201 paths: %v", full)
	// Until four runs were killed midway (the others finished first).
	killed := 0
	for round := 0; killed < 4 && round < 12; round++ {
		dir := cpCache(t, orig)
		gc := proc.Start(t, exec.Command(binary(t), "gc", "--quiet", "--keep", root, dir), fmt.Sprintf("gc, round %d", round))
		delay := time.Duration(rand.Int64N(int64(full)))
		time.Sleep(delay)
		gc.Kill()
		if err := gc.Wait(t, proc.Timeout); err != nil {
			killed++
		}
		if code, stdout, stderr := runBinary(t, nil, "verify", "--quiet", dir); code != 0 || strings.TrimSpace(stdout+stderr) != "" {
			t.Fatalf("round %d, killed after %v: verify: exit %d\n%s%s", round, delay, code, stdout, stderr)
		}
		mkbinarycache(t, "gc", "--quiet", "--keep", root, dir)
		if d := cmp.Diff(want, testkit.Files(t, dir)); d != "" {
			t.Errorf("round %d: after a killed gc and a full one (-want +got):\n%s", round, d)
		}
	}
	t.Logf("%d gc runs killed before they finished", killed)
	mkbinarycache(t, "verify", ref)
}

// copy on a cache of real Nix paths: NARs, narinfos (signatures kept),
// listings and debuginfo entries, byte for byte; then Nix substitutes from
// the copy, checking the signatures.
func TestCopyNixCache(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	src := filepath.Join(t.TempDir(), "src")
	mkbinarycache(t, "--out", src, "--build-closure", "--nar-listing", "--index-debug-info", "--quiet", p["app"], p["junk"])
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "k.sec"), filepath.Join(keys, "k.pub")
	mkbinarycache(t, "keygen", "copy-test-1", "--secret-key-file", sec, "--public-key-file", pub)
	mkbinarycache(t, "sign", "--quiet", "--key-file", sec, src)
	srcFiles := testkit.Files(t, src)

	dst := filepath.Join(t.TempDir(), "dst")
	mkbinarycache(t, "copy", "--from", src, "--to", dst, p["app"])
	if d := cmp.Diff([]string{"app", "busybox", "hello", "libgreet", "motd"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy of app's closure (-want +got):\n%s", d)
	}
	sameFiles(t, src, dst)
	mkbinarycache(t, "copy", "--from", src, "--to", dst, "--build-closure", p["app"])
	if d := cmp.Diff([]string{"app", "app", "busybox", "hello", "hello", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy of app's build closure (-want +got):\n%s", d)
	}
	mkbinarycache(t, "copy", "--from", src, "--to", dst)
	if d := cmp.Diff(srcFiles, testkit.Files(t, dst)); d != "" {
		t.Errorf("a full copy differs (-src +dst):\n%s", d)
	}
	sameFiles(t, src, dst)
	if d := cmp.Diff(srcFiles, testkit.Files(t, src)); d != "" {
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
		code, stdout, stderr := runBinary(t, nil, tc.args...)
		if out := stdout + stderr; code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("mkbinarycache %s: exit %d, %q; want exit %d saying %q", strings.Join(tc.args, " "), code, out, tc.code, tc.says)
		}
	}
	if d := cmp.Diff(srcFiles, testkit.Files(t, dst)); d != "" {
		t.Errorf("bad input changed the cache:\n%s", d)
	}
}

// sameFiles fails unless every file of dst is the same as src's, byte
// for byte and mode.
func sameFiles(t testing.TB, src, dst string) {
	t.Helper()
	want := testkit.Files(t, src)
	for f, got := range testkit.Files(t, dst) {
		if w, ok := want[f]; !ok || w != got {
			t.Errorf("%s differs from the source's", f)
		}
	}
}
