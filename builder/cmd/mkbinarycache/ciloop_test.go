package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// The CI workflow with real Nix: a cache kept between runs, filled by
// Nix's post-build-hook (mkbinarycache hook), substituted from by fresh
// stores, collected by gc and copied by copy (here and in hook_test.go,
// gccopy_test.go, powerloss_test.go), with the order of file operations
// that keeps it safe across power cuts.

// ciNix is the CI loop's Nix expression.
func ciNix(t testing.TB) string {
	return filepath.Join(nixtest.RepoRoot(t), "testdata", "ci.nix")
}

var (
	buildingRE = regexp.MustCompile(`building '(/[^']+\.drv)'`)
	copyingRE  = regexp.MustCompile(`copying path '(/[^']+)' from '([^']+)'`)
)

// names returns the sorted name parts of the store paths (without the
// hash and, for derivations, the .drv).
func names(paths []string) []string {
	var out []string
	for _, p := range paths {
		base := filepath.Base(p)
		if i := strings.IndexByte(base, '-'); i >= 0 {
			base = base[i+1:]
		}
		out = append(out, strings.TrimSuffix(base, ".drv"))
	}
	sort.Strings(out)
	return out
}

// matches returns the first group of every match of re in s.
func matches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// narinfoNames returns the names of the store paths the cache has.
func narinfoNames(t testing.TB, dir string) []string {
	t.Helper()
	var paths []string
	for p := range testkit.NarInfos(t, dir) {
		paths = append(paths, p)
	}
	return names(paths)
}

// The CI recipe, exactly as docs/ci.md gives it: nix.conf lines and the
// post-build-hook script. %s is the public key.
const (
	recipeConf = `post-build-hook = /etc/nix/cache-hook.sh
extra-substituters = file:///var/cache/nix-ci
extra-trusted-public-keys = %s
`
	recipeHook = `#!/bin/sh
exec /usr/local/bin/mkbinarycache hook --build-closure --key-file /etc/nix/ci-cache.sec --out /var/cache/nix-ci
`
	cacheURL = "file:///var/cache/nix-ci"
)

// baseConf is what every nix.conf here has (no network, root single-user).
const baseConf = `build-users-group =
substituters =
experimental-features = nix-command
sandbox = true
`

// hostSetup makes a fresh host the recipe's machine, in the script's own
// mount namespace (nothing shows outside it): mkbinarycache in
// /usr/local/bin, /etc/nix holding the recipe's nix.conf and hook and the
// secret key, and the cache directory kept between runs at
// /var/cache/nix-ci.
func hostSetup(bin, secretKey, publicKey, cache string) string {
	return fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /usr/local/bin
cp %s /usr/local/bin/mkbinarycache
mount -t tmpfs tmpfs /etc/nix
cat > /etc/nix/nix.conf <<'EOF'
%s%sEOF
cat > /etc/nix/cache-hook.sh <<'EOF'
%sEOF
chmod 0755 /etc/nix/cache-hook.sh
cp %s /etc/nix/ci-cache.sec
chmod 0600 /etc/nix/ci-cache.sec
mount -t tmpfs tmpfs /var/cache
mkdir /var/cache/nix-ci
mount --bind %s /var/cache/nix-ci
`, nixtest.ShellQuote(bin), baseConf, fmt.Sprintf(recipeConf, publicKey), recipeHook,
		nixtest.ShellQuote(secretKey), nixtest.ShellQuote(cache))
}

// forRecipeHosts runs f as a subtest for Nix 2.8 and 2.34 (the oldest
// and the newest, and the extra one of MKBINARYCACHE_EXTRA_ROOTFS if set) with a cache directory of its own, the public key file
// of the recipe's key and the setup script of the recipe's machine.
func forRecipeHosts(t *testing.T, f func(t *testing.T, v nixtest.Version, setup, cache, pub string)) {
	t.Helper()
	nixtest.Require(t)
	bin := binary(t)
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "ci-cache.sec"), filepath.Join(keys, "ci-cache.pub")
	mkbinarycache(t, "keygen", "ci-cache-1", "--secret-key-file", sec, "--public-key-file", pub)
	pubKey, err := os.ReadFile(pub)
	testkit.Must(t, err)
	for _, v := range nixtest.Versions(t) {
		if v.Name != "2.8" && v.Name != "2.34" && !v.Extra {
			continue
		}
		t.Run("Nix "+v.Name, func(t *testing.T) {
			v.Require(t)
			cache := filepath.Join(t.TempDir(), "cache")
			testkit.Must(t, os.Mkdir(cache, 0o755))
			f(t, v, hostSetup(bin, sec, strings.TrimSpace(string(pubKey)), cache), cache, pub)
		})
	}
}

// TestCILoop is a CI pipeline on fresh machines sharing one cache
// directory: run 1 builds with the recipe's post-build-hook, run 2
// substitutes everything (max-jobs 0), gc keeps the root's build closure,
// run 3 changes one leaf and builds it and its dependents only,
// substituting the rest, build-time inputs included.
func TestCILoop(t *testing.T) {
	forRecipeHosts(t, func(t *testing.T, v nixtest.Version, setup, cache, pub string) {
		bb := nixtest.BusyboxDir(t)
		build := func(label string, args string) (result []string, log string) {
			t.Helper()
			script := setup + fmt.Sprintf("out=$(nix-build %s --argstr busybox %s --no-out-link %s)\necho RESULT $out\n",
				nixtest.ShellQuote(ciNix(t)), nixtest.ShellQuote(bb), args)
			log, err := v.FreshStore(t, script)
			if err != nil {
				t.Fatalf("%s: %v\n%s", label, err, log)
			}
			if testing.Verbose() {
				t.Logf("%s:\n%s", label, log)
			}
			for _, l := range strings.Split(log, "\n") {
				if r, ok := strings.CutPrefix(l, "RESULT "); ok {
					return strings.Fields(r), log
				}
			}
			t.Fatalf("%s: no result\n%s", label, log)
			return nil, ""
		}
		verify := func(label string) {
			t.Helper()
			if code, stdout, stderr := runBinary(t, nil, "verify", "--public-key", pub, cache); code != 0 {
				t.Fatalf("%s: verify: exit %d\n%s%s", label, code, stdout, stderr)
			}
		}

		// Run 1: every build adds its build closure, signed.
		res, log := build("run 1", "-A app -A junk")
		app, junk := res[0], res[1]
		built := names(matches(buildingRE, log))
		if d := cmp.Diff([]string{"app", "hello", "junk", "libgreet", "motd", "tool"}, built); d != "" {
			t.Errorf("run 1 built (-want +got):\n%s", d)
		}
		want := []string{"app", "app", "busybox", "hello", "hello", "junk", "junk", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}
		if d := cmp.Diff(want, narinfoNames(t, cache)); d != "" {
			t.Errorf("cache after run 1, outputs and derivations (-want +got):\n%s", d)
		}
		verify("run 1")

		// Run 2, a fresh machine: everything comes from the cache.
		res, log = build("run 2", "-A app --option max-jobs 0")
		if res[0] != app {
			t.Errorf("run 2 got %s, run 1 %s", res[0], app)
		}
		if b := matches(buildingRE, log); len(b) > 0 {
			t.Errorf("run 2 built %q, want everything substituted", b)
		}
		if c := matches(copyingRE, log); !slices.Contains(c, app) {
			t.Errorf("run 2 did not substitute %s from the cache:\n%s", app, log)
		}

		// gc keeps app's build closure: junk goes, the build-time tool stays.
		out := mkbinarycache(t, "gc", "--build-closure", "--keep", app, cache)
		if !slices.Contains(strings.Split(out, "\n"), junk) {
			t.Errorf("gc did not report removing %s:\n%s", junk, out)
		}
		want = []string{"app", "app", "busybox", "hello", "hello", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}
		if d := cmp.Diff(want, narinfoNames(t, cache)); d != "" {
			t.Errorf("cache after gc (-want +got):\n%s", d)
		}
		verify("gc")

		// Run 3, one leaf changed: only it and its dependents build.
		res, log = build("run 3", "-A app --argstr motd 'third run'")
		if res[0] == app {
			t.Errorf("run 3 got the same app %s", app)
		}
		if d := cmp.Diff([]string{"app", "motd"}, names(matches(buildingRE, log))); d != "" {
			t.Errorf("run 3 built (-want +got):\n%s", d)
		}
		copied := names(matches(copyingRE, log))
		for _, n := range []string{"tool", "hello", "libgreet"} {
			if !slices.Contains(copied, n) {
				t.Errorf("run 3 did not substitute %s (copied %q)", n, copied)
			}
		}
		verify("run 3")
		t.Logf("Nix %s: %d narinfos after run 3", v.Name, len(narinfoNames(t, cache)))
	})
}

// TestHookUnderDaemon runs the recipe in multi-user mode: nix-daemon,
// started with an empty environment as an init system would, runs the
// hook as root with no PATH.
func TestHookUnderDaemon(t *testing.T) {
	forRecipeHosts(t, func(t *testing.T, v nixtest.Version, setup, cache, pub string) {
		script := setup + fmt.Sprintf(`
env -i /usr/bin/nix-daemon > /tmp/nix-daemon.log 2>&1 &
daemon=$!
for i in $(seq 300); do [ -S /nix/var/nix/daemon-socket/socket ] && break; sleep 0.1; done
[ -S /nix/var/nix/daemon-socket/socket ] || { echo "nix-daemon made no socket within 30 s:"; cat /tmp/nix-daemon.log; exit 1; }
NIX_REMOTE=daemon nix-build %s --argstr busybox %s -A app --no-out-link
kill $daemon
`, nixtest.ShellQuote(ciNix(t)), nixtest.ShellQuote(nixtest.BusyboxDir(t)))
		log, err := v.FreshStore(t, script)
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		if !strings.Contains(log, "post-build-hook: mkbinarycache hook: added") {
			t.Errorf("no hook output:\n%s", log)
		}
		want := []string{"app", "app", "busybox", "hello", "hello", "libgreet", "libgreet", "motd", "motd", "tool", "tool"}
		if d := cmp.Diff(want, narinfoNames(t, cache)); d != "" {
			t.Errorf("cache (-want +got):\n%s\n%s", d, log)
		}
		if code, stdout, stderr := runBinary(t, nil, "verify", "--public-key", pub, cache); code != 0 {
			t.Errorf("verify: exit %d\n%s%s", code, stdout, stderr)
		}
	})
}
