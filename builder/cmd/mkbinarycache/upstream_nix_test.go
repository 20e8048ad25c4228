package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// upstreamCache writes, on the host, a signed cache of fixture.nix's
// hello closure (hello, libgreet, busybox) and serves it on loopback: the
// stand-in for cache.nixos.org. It returns the server and the public key.
func upstreamCache(t *testing.T, hello string) (*testkit.Server, string) {
	t.Helper()
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "up.sec"), filepath.Join(keys, "up.pub")
	mkbinarycache(t, "keygen", "upstream-1", "--secret-key-file", sec, "--public-key-file", pub)
	dir := filepath.Join(t.TempDir(), "upstream")
	mkbinarycache(t, "--out", dir, "--quiet", hello)
	mkbinarycache(t, "sign", "--key-file", sec, dir)
	key, err := os.ReadFile(pub)
	testkit.Must(t, err)
	return testkit.Serve(t, dir), strings.TrimSpace(string(key))
}

// The hook with --upstream stores only what upstream lacks (keys from
// Nix's trusted-public-keys), a fresh machine with both substituters
// builds everything with max-jobs 0, verify, gc and copy accept the cache
// given the upstream, and a hook whose outputs are all there asks nothing.
func TestHookUpstream(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	hello := nixtest.Run(t, "nix-build", ciNix(t), "--argstr", "busybox", nixtest.BusyboxDir(t), "-A", "hello", "--no-out-link")
	srv, upKey := upstreamCache(t, hello)
	forRecipeHosts(t, func(t *testing.T, v nixtest.Version, setup, cache, pub string) {
		home := t.TempDir()
		conf := fmt.Sprintf(`cat >> /etc/nix/nix.conf <<'EOF'
extra-substituters = %s
extra-trusted-public-keys = %s
EOF
cat > /etc/nix/cache-hook.sh <<'EOF'
#!/bin/sh
exec /usr/local/bin/mkbinarycache hook --build-closure --key-file /etc/nix/ci-cache.sec --upstream %s --out /var/cache/nix-ci
EOF
export XDG_CACHE_HOME=%s
`, srv.URL, upKey, srv.URL, home)
		build := func(label, args string) string {
			t.Helper()
			script := setup + conf + fmt.Sprintf("nix-build %s --argstr busybox %s --no-out-link %s\n",
				nixtest.ShellQuote(ciNix(t)), nixtest.ShellQuote(nixtest.BusyboxDir(t)), args)
			log, err := v.FreshStore(t, script, home)
			if err != nil {
				t.Fatalf("%s: %v\n%s", label, err, log)
			}
			return log
		}
		before, _ := srv.Requests()
		ours := srv.OurNarInfos()
		log := build("run 1", "-A app")
		n, _ := srv.Requests()
		t.Logf("Nix %s, run 1: the hooks asked for %d narinfos, Nix for %d", v.Name, srv.OurNarInfos()-ours, n-before-(srv.OurNarInfos()-ours))
		if strings.Contains(log, "warning: upstream") {
			t.Errorf("run 1: upstream warnings:\n%s", log)
		}
		// hello, libgreet and busybox are upstream's: only their
		// derivations are stored, with what upstream lacks.
		want := []string{"app", "app", "hello", "libgreet", "motd", "motd", "tool", "tool"}
		if d := cmp.Diff(want, narinfoNames(t, cache)); d != "" {
			t.Errorf("cache (-want +got):\n%s\n%s", d, log)
		}
		args := []string{"--upstream", srv.URL, "--upstream-key", upKey}
		if code, stdout, stderr := runBinary(t, nil, "verify", cache); code == 0 {
			t.Errorf("verify without --upstream passed:\n%s%s", stdout, stderr)
		}
		mkbinarycache(t, append([]string{"verify", "--public-key", pub, cache}, args...)...)

		// Run 2, a fresh machine with both substituters: nothing builds.
		log = build("run 2", "-A app --option max-jobs 0")
		if b := matches(buildingRE, log); len(b) > 0 {
			t.Errorf("run 2 built %q", b)
		}
		from := map[string][]string{}
		for _, m := range copyingRE.FindAllStringSubmatch(log, -1) {
			from[m[2]] = append(from[m[2]], names([]string{m[1]})[0])
		}
		for _, n := range []string{"hello", "libgreet"} {
			if !slices.Contains(from[srv.URL], n) {
				t.Errorf("run 2: %s not from upstream (%v)", n, from)
			}
		}
		if !slices.Contains(from[cacheURL], "app") {
			t.Errorf("run 2: app not from the cache (%v)", from)
		}

		// A hook whose outputs are all present makes no request.
		before, beforeAll := srv.Requests()
		if code, out := hook(t, p["app.drv"], "--build-closure", "--strict", "--out", cache, "--upstream", srv.URL, "--upstream-key", upKey); code != 0 {
			t.Fatalf("hook: exit %d\n%s", code, out)
		}
		if n, all := srv.Requests(); n != before || all != beforeAll {
			t.Errorf("a hook with nothing to add made %d requests", all-beforeAll)
		}

		// An upstream the hook cannot ask (here: a bad key) loses nothing.
		other := filepath.Join(t.TempDir(), "other")
		if code, out := hook(t, p["app.drv"], "--out", other, "--upstream", srv.URL, "--upstream-key", "not-a-key"); code != 0 ||
			!strings.Contains(out, "every path stored") {
			t.Errorf("hook with a bad key: exit %d, want 0 and a warning\n%s", code, out)
		}
		if got := narinfoNames(t, other); !slices.Contains(got, "hello") || !slices.Contains(got, "app") {
			t.Errorf("hook with a bad key stored %q, want everything", got)
		}

		// gc (no network) and copy take the upstream's paths as there.
		before, beforeAll = srv.Requests()
		mkbinarycache(t, "gc", "--build-closure", "--keep", p["app"], "--upstream", srv.URL, cache)
		if n, all := srv.Requests(); n != before || all != beforeAll {
			t.Errorf("gc made %d requests", all-beforeAll)
		}
		dst := filepath.Join(t.TempDir(), "copy")
		mkbinarycache(t, append([]string{"copy", "--from", cache, "--to", dst}, args...)...)
		mkbinarycache(t, append([]string{"verify", "--public-key", pub, dst}, args...)...)
		if d := cmp.Diff(narinfoNames(t, cache), narinfoNames(t, dst)); d != "" {
			t.Errorf("copy (-cache +copy):\n%s", d)
		}
	})
}
