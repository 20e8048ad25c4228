package main_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

var (
	verbatimRE = regexp.MustCompile("(?s)<!-- verbatim: (\\w+) -->\n```sh\n(.*?)```\n")
	yamlRE     = regexp.MustCompile("(?s)```yaml\n(.*?)```\n")
)

// recipeBlocks returns docs/ci.md's shell blocks marked verbatim, by name,
// after checking that every workflow pastes each of them as it is.
func recipeBlocks(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(nixtest.RepoRoot(t), "docs", "ci.md"))
	testkit.Must(t, err)
	blocks := map[string]string{}
	for _, m := range verbatimRE.FindAllStringSubmatch(string(data), -1) {
		blocks[m[1]] = m[2]
	}
	if len(blocks) != 2 || blocks["setup"] == "" || blocks["gc"] == "" {
		t.Fatalf("docs/ci.md: verbatim blocks %q, want setup and gc", blocks)
	}
	workflows := yamlRE.FindAllStringSubmatch(string(data), -1)
	if len(workflows) != 2 {
		t.Fatalf("docs/ci.md: %d yaml blocks, want the GitHub and the GitLab workflow", len(workflows))
	}
	for i, w := range workflows {
		for name, b := range blocks {
			if !pastes(w[1], b) {
				t.Errorf("docs/ci.md: workflow %d does not paste the %s block as it is", i+1, name)
			}
		}
	}
	return blocks
}

// pastes reports whether text holds block's lines, each indented the same.
func pastes(text, block string) bool {
	lines := strings.Split(text, "\n")
	want := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	for i, l := range lines {
		indent, ok := strings.CutSuffix(l, want[0])
		if !ok || strings.TrimSpace(indent) != "" || i+len(want) > len(lines) {
			continue
		}
		all := true
		for k, w := range want {
			if got := lines[i+k]; got != indent+w && !(w == "" && strings.TrimSpace(got) == "") {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// The recipe of docs/ci.md, its shell blocks as written, on fresh machines
// with Nix 2.8 and 2.34: cold, warm, and with one leaf changed, the cache
// directory packed and unpacked between runs as a CI cache service does,
// with and without --upstream. Only the installer (Nix is there), the
// CI's cache service (tar), getting mkbinarycache (copied) and
// cache.nixos.org (a loopback upstream holding hello's closure) stand in.
func TestCIRecipe(t *testing.T) {
	start := time.Now()
	nixtest.Require(t)
	blocks := recipeBlocks(t)
	bin := binary(t)
	bb := nixtest.BusyboxDir(t)
	hello := nixtest.Run(t, "nix-build", ciNix(t), "--argstr", "busybox", bb, "-A", "hello", "--no-out-link")
	srv, upKey := upstreamCache(t, hello)
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "ci.sec"), filepath.Join(keys, "ci.pub")
	mkbinarycache(t, "keygen", "ci-cache-1", "--secret-key-file", sec, "--public-key-file", pub)
	secret, err := os.ReadFile(sec)
	testkit.Must(t, err)
	public, err := os.ReadFile(pub)
	testkit.Must(t, err)

	for _, v := range nixtest.Versions(t) {
		if v.Name != "2.8" && v.Name != "2.34" {
			continue
		}
		t.Run("Nix "+v.Name, func(t *testing.T) {
			v.Require(t)
			saved := map[bool][]int64{}
			for _, withUpstream := range []bool{true, false} {
				sub := func(s string) string {
					if !withUpstream {
						s = strings.ReplaceAll(s, " --upstream https://cache.nixos.org", "")
					}
					return strings.ReplaceAll(s, "https://cache.nixos.org", srv.URL)
				}
				archive := filepath.Join(t.TempDir(), "cache.tar")
				for run, motd := range []string{"first run", "first run", "third run"} {
					script := fmt.Sprintf(`set -e
# The installer: Nix with its defaults, cache.nixos.org (here the loopback
# upstream) a substituter with its key trusted.
mount -t tmpfs tmpfs /etc/nix
cat > /etc/nix/nix.conf <<'EOF'
%sextra-substituters = %s
extra-trusted-public-keys = %s
EOF
mkdir -p /var/cache /usr/local/bin
mount -t tmpfs tmpfs /var/cache
mount -t tmpfs tmpfs /usr/local/bin
export NIX_CI_CACHE=/var/cache/nix-ci NIX_CI_PUBLIC_KEY=%s NIX_CI_SIGNING_KEY=%s
export XDG_CACHE_HOME=$(mktemp -d)
# The CI's cache service restores.
if [ -e %[6]s ]; then mkdir -p "$NIX_CI_CACHE" && tar -xf %[6]s -C "$NIX_CI_CACHE"; fi
# docs/ci.md: setup
%s
# Getting mkbinarycache.
cp %s /usr/local/bin/mkbinarycache
# The project's build.
cd "$(mktemp -d)"
nix-build %s --argstr busybox %s --argstr motd %s -A app
# docs/ci.md: gc
%s
# The CI's cache service saves.
tar -cf %[6]s.new -C "$NIX_CI_CACHE" . && mv %[6]s.new %[6]s
`, baseConf, srv.URL, upKey, nixtest.ShellQuote(strings.TrimSpace(string(public))), nixtest.ShellQuote(strings.TrimSpace(string(secret))),
						nixtest.ShellQuote(archive), sub(blocks["setup"]), nixtest.ShellQuote(bin), nixtest.ShellQuote(ciNix(t)),
						nixtest.ShellQuote(bb), nixtest.ShellQuote(motd), sub(blocks["gc"]))
					label := fmt.Sprintf("upstream %t, run %d", withUpstream, run+1)
					log, err := v.FreshStore(t, script)
					if err != nil {
						t.Fatalf("%s: %v\n%s", label, err, log)
					}
					built := names(matches(buildingRE, log))
					want := [][]string{{"app", "motd", "tool"}, nil, {"app", "motd"}}[run]
					if d := cmp.Diff(want, built); d != "" {
						t.Errorf("%s built (-want +got):\n%s\n%s", label, d, log)
					}
					if strings.Contains(log, "warning") {
						t.Errorf("%s: warnings:\n%s", label, log)
					}
					fi, err := os.Stat(archive)
					testkit.Must(t, err)
					saved[withUpstream] = append(saved[withUpstream], fi.Size())
				}
			}
			t.Logf("Nix %s: saved archive after runs 1, 2, 3: with --upstream %v bytes, without %v bytes",
				v.Name, saved[true], saved[false])
			for i := range saved[true] {
				if saved[true][i] >= saved[false][i] {
					t.Errorf("run %d: the archive with --upstream (%d bytes) is not smaller than without (%d)", i+1, saved[true][i], saved[false][i])
				}
			}
		})
	}
	// Its time is a figure to read, not a pass mark: a loaded CI machine
	// must not fail the recipe for being slow.
	t.Logf("the recipe test took %v (4 minutes is its budget on a quiet machine)", time.Since(start))
}

// TestSelfHostedRecipeIsTheDocs checks that the hook script and nix.conf
// lines the CI loop tests (recipeHook, recipeConf) are the ones docs/ci.md
// shows for a self-hosted runner, which says they are tested as written.
func TestSelfHostedRecipeIsTheDocs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(nixtest.RepoRoot(t), "docs", "ci.md"))
	if errors.Is(err, fs.ErrNotExist) {
		// The package's source (nix/package.nix) holds the program only.
		t.Skip("no docs/ci.md in this source tree")
	}
	testkit.Must(t, err)
	for name, want := range map[string]string{
		"hook script":    "```sh\n" + recipeHook + "```\n",
		"nix.conf lines": "```\n" + fmt.Sprintf(recipeConf, "ci-cache-1:…   # the line in /etc/nix/ci-cache.pub") + "```\n",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("docs/ci.md does not show the %s the CI loop tests:\n%s", name, want)
		}
	}
}
