package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// ciPaths builds ci.nix's app and junk on the host and returns the
// outputs and derivations by name.
func ciPaths(t testing.TB) map[string]string {
	t.Helper()
	out := nixtest.Run(t, "nix-build", ciNix(t), "--argstr", "busybox", nixtest.BusyboxDir(t),
		"-A", "app", "-A", "junk", "-A", "tool", "-A", "motd", "--option", "sandbox", "true", "--no-out-link")
	m := map[string]string{}
	for i, n := range []string{"app", "junk", "tool", "motd"} {
		p := strings.Fields(out)[i]
		m[n] = p
		m[n+".drv"] = nixtest.Run(t, "nix-store", "--query", "--deriver", p)
	}
	return m
}

// hook runs the hook as Nix 2.8 does, OUT_PATHS empty and DRV_PATH set,
// and returns its exit code and output.
func hook(t testing.TB, drv string, args ...string) (code int, out string) {
	t.Helper()
	code, stdout, stderr := runBinary(t, []string{"OUT_PATHS=", "DRV_PATH=" + drv}, append([]string{"hook"}, args...)...)
	return code, stdout + stderr
}

// Several Nix builds finishing at once run their hooks on one cache.
func TestHookConcurrent(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	for round := range 3 {
		dir := filepath.Join(t.TempDir(), "cache")
		var wg sync.WaitGroup
		errs := make([]string, 4)
		for i, d := range []string{"app.drv", "junk.drv", "tool.drv", "app.drv"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code, out := hook(t, p[d], "--build-closure", "--strict", "--out", dir); code != 0 {
					errs[i] = fmt.Sprintf("hook %s: exit %d\n%s", d, code, out)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Errorf("round %d: %s", round, e)
			}
		}
		mkbinarycache(t, "verify", dir)
		want := []string{"app", "app", "busybox", "hello", "hello", "junk", "junk", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}
		if d := cmp.Diff(want, narinfoNames(t, dir)); d != "" {
			t.Errorf("round %d: cache (-want +got):\n%s", round, d)
		}
	}
}

// A hook whose outputs are all in the cache asks Nix nothing: it runs no
// program at all, and returns in milliseconds.
func TestHookNothingToAdd(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	dir := filepath.Join(t.TempDir(), "cache")
	if code, out := hook(t, p["app.drv"], "--build-closure", "--out", dir); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command("strace", "-f", "-qq", "-o", trace, "-e", "trace=execve", binary(t), "hook", "--build-closure", "--out", dir)
	cmd.Env = []string{"OUT_PATHS=", "DRV_PATH=" + p["app.drv"]}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace hook: %v\n%s", err, out)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "execve("); n != 1 {
		t.Errorf("the hook ran %d programs, want none but itself:\n%s", n-1, data)
	}
	var times []time.Duration
	for range 21 {
		start := time.Now()
		if code, out := hook(t, p["app.drv"], "--build-closure", "--out", dir); code != 0 || out != "" {
			t.Fatalf("exit %d %q", code, out)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("hook with nothing to add: median %v, min %v (process start included)", times[len(times)/2], times[0])
	if times[len(times)/2] > time.Second {
		t.Errorf("median %v", times[len(times)/2])
	}
}

// nix-daemon runs hooks with a minimal environment: no PATH.
func TestHookWithoutPath(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	dir := filepath.Join(t.TempDir(), "cache")
	cmd := exec.Command(binary(t), "hook", "--build-closure", "--strict", "--out", dir)
	cmd.Env = []string{"OUT_PATHS=", "DRV_PATH=" + p["tool.drv"]}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hook without PATH: %v\n%s", err, out)
	}
	mkbinarycache(t, "verify", dir)
	if d := cmp.Diff([]string{"busybox", "tool", "tool"}, narinfoNames(t, dir)); d != "" {
		t.Errorf("cache (-want +got):\n%s", d)
	}
	// OUT_PATHS as Nix 2.34 sets it, without --build-closure.
	dir = filepath.Join(t.TempDir(), "cache")
	if code, stdout, stderr := runBinary(t, []string{"OUT_PATHS=" + p["motd"], "DRV_PATH=" + p["motd.drv"]}, "hook", "--out", dir); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if d := cmp.Diff([]string{"motd"}, narinfoNames(t, dir)); d != "" {
		t.Errorf("cache (-want +got):\n%s", d)
	}
}

// A hook never fails a build over the cache, unless --strict: a cache
// held by gc past --lock-wait, a full disk, an unwritable directory.
func TestHookCacheProblems(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	dir := filepath.Join(t.TempDir(), "cache")
	lock, err := testkit.InitCache(t, dir, cachedir.Info{StoreDir: cachedir.DefaultStoreDir}).Lock(context.Background(), cachedir.Exclusive, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out := hook(t, p["tool.drv"], "--lock-wait", "300ms", "--out", dir)
	if code != 0 || !strings.Contains(out, "warning") || !strings.Contains(out, "locked") {
		t.Errorf("hook on a locked cache: exit %d, %q; want exit 0 and a warning", code, out)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, before --lock-wait", d)
	}
	if code, out := hook(t, p["tool.drv"], "--lock-wait", "100ms", "--strict", "--out", dir); code != 1 {
		t.Errorf("--strict on a locked cache: exit %d, %q; want exit 1", code, out)
	}
	// Once gc is done, the hook gets in.
	go func() { time.Sleep(200 * time.Millisecond); lock.Release() }()
	if code, out := hook(t, p["tool.drv"], "--strict", "--out", dir); code != 0 {
		t.Errorf("hook after gc: exit %d\n%s", code, out)
	}

	// A full disk: a 64 KiB file system.
	small := t.TempDir()
	script := fmt.Sprintf("mount -t tmpfs -o size=64k tmpfs %s && OUT_PATHS= DRV_PATH=%s %s hook --out %s/cache; echo rc=$?; OUT_PATHS= DRV_PATH=%s %s hook --strict --out %s/cache; echo rc=$?",
		small, p["app.drv"], binary(t), small, p["app.drv"], binary(t), small)
	full, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, full)
	}
	if s := string(full); !strings.Contains(s, "no space left on device") || !strings.Contains(s, "rc=0\n") || !strings.Contains(s, "rc=1\n") {
		t.Errorf("full disk: want a warning and exit 0, then exit 1 with --strict:\n%s", s)
	}

	// An unwritable place.
	if code, out := hook(t, p["tool.drv"], "--out", "/proc/no-cache"); code != 0 || !strings.Contains(out, "warning") {
		t.Errorf("unwritable cache: exit %d, %q", code, out)
	}
	// Misuse is an error still (exit 2): the hook is set up wrongly.
	if code, stdout, stderr := runBinary(t, []string{"OUT_PATHS=", "DRV_PATH="}, "hook", "--out", dir); code != 2 {
		t.Errorf("no OUT_PATHS nor DRV_PATH: exit %d %q", code, stdout+stderr)
	}
	if code, out := hook(t, p["tool.drv"]); code != 2 {
		t.Errorf("no --out: exit %d %q", code, out)
	}
}

// Misuse of hook, gc and copy is a usage error naming what is wrong.
func TestHookGCCopyUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		says string
	}{
		{[]string{"hook"}, map[string]string{"DRV_PATH": "/nix/store/x.drv"}, "--out is required"},
		{[]string{"hook", "--out", dir}, nil, "neither OUT_PATHS nor DRV_PATH"},
		{[]string{"hook", "--out", dir, "extra"}, nil, "unexpected argument"},
		{[]string{"hook", "--out", dir, "--compression", "lz4"}, map[string]string{"OUT_PATHS": "/nix/store/x"}, "lz4"},
		{[]string{"gc", dir}, nil, "--keep"},
		{[]string{"gc", "--keep", "/nix/store/x"}, nil, "exactly one cache directory"},
		{[]string{"gc", "--keep", "relative", dir}, nil, "relative"},
		{[]string{"copy", "--from", dir}, nil, "--to"},
		{[]string{"copy", "--from", dir, "--to", dir}, nil, "cache"},
	} {
		code, stdout, stderr := runMainEnv(func(k string) string { return tc.env[k] }, tc.args...)
		if out := stdout + stderr; code != cli.ExitUsage && !(tc.args[0] == "copy" && code == cli.ExitFailure) || !strings.Contains(out, tc.says) {
			t.Errorf("%q: exit %d, %q; want a usage error saying %q", tc.args, code, out, tc.says)
		}
	}
}
