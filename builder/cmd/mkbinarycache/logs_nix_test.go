package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// hook --build-logs stores the log of what Nix built, and `nix log` on a
// fresh machine with the cache as a substituter prints it, for the output
// and for the derivation; a build Nix kept no log of stores none, and the
// hook says so.
func TestHookBuildLogs(t *testing.T) {
	forRecipeHosts(t, func(t *testing.T, v nixtest.Version, setup, cache, pub string) {
		logHook := `cat > /etc/nix/cache-hook.sh <<'EOF'
#!/bin/sh
exec /usr/local/bin/mkbinarycache hook --build-closure --build-logs --key-file /etc/nix/ci-cache.sec --out /var/cache/nix-ci
EOF
`
		run := func(label, script string) string {
			t.Helper()
			log, err := v.FreshStore(t, setup+logHook+script)
			if err != nil {
				t.Fatalf("%s: %v\n%s", label, err, log)
			}
			return log
		}
		build := fmt.Sprintf("nix-build %s --argstr busybox %s --no-out-link", nixtest.ShellQuote(ciNix(t)), nixtest.ShellQuote(nixtest.BusyboxDir(t)))
		out := run("run 1", build+" -A app\n"+build+" -A junk --option keep-build-log false\n")
		if !strings.Contains(out, "stored the build log of") {
			t.Errorf("run 1: the hook did not say it stored a log:\n%s", out)
		}
		if !strings.Contains(out, "-junk.drv stored: Nix has none") {
			t.Errorf("run 1: the hook did not say junk has no log:\n%s", out)
		}
		logs, err := os.ReadDir(filepath.Join(cache, "log"))
		if err != nil {
			t.Fatal(err)
		}
		var app string
		for _, e := range logs {
			if strings.HasSuffix(e.Name(), "-junk.drv") {
				t.Errorf("a log of junk, built with keep-build-log false: %s", e.Name())
			}
			if strings.HasSuffix(e.Name(), "-app.drv") {
				app = e.Name()
			}
		}
		if app == "" {
			t.Fatalf("no log of app in %s: %v", cache, logs)
		}
		mkbinarycache(t, "verify", "--public-key", pub, cache)

		// A fresh machine, the cache a substituter: nix log of the output
		// (through its narinfo's Deriver) and of the derivation.
		out = run("nix log", fmt.Sprintf(`app=$(%s -A app --option max-jobs 0)
echo "== output"; nix log "$app"
echo "== drv"; nix log %s
`, build, nixtest.ShellQuote("/nix/store/"+app)))
		if n := strings.Count(out, "app: generating with tool"); n != 2 {
			t.Errorf("nix log printed the log %d times, want 2 (output and derivation):\n%s", n, out)
		}
	})
}
