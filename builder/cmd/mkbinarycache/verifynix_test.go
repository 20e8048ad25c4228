package main_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// verifyCmd runs `mkbinarycache verify args...`, returning its stdout (one
// problem a line), stderr, and whether it exited 0.
func verifyCmd(t *testing.T, args ...string) (problems []string, stderr string, ok bool) {
	t.Helper()
	code, stdout, stderr := runBinary(t, nil, append([]string{"verify"}, args...)...)
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if l != "" {
			problems = append(problems, l)
		}
	}
	sort.Strings(problems)
	return problems, stderr, code == 0
}

// `mkbinarycache verify` accepts what each Nix version of the matrix writes
// with its own `nix copy` on a fresh store of its own: every compression,
// and a cache with NAR listings, the debug-info index and signatures by a
// key Nix made. With another key, the two input-addressed paths are
// unsigned while busybox, content-addressed, needs no signature; a listing
// that Nix wrote, then damaged, is caught.
func TestAcceptsNixCopy(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	for _, v := range nixtest.Versions(t) {
		t.Run("nix-"+v.Name, func(t *testing.T) {
			t.Parallel()
			v.Require(t)
			compressions := []string{"none", "xz", "bzip2", "zstd"}
			if !v.Host() {
				// Their xz is the same liblzma as the host Nix's, and nix
				// copy's xz is slow (12 s here): time for other checks.
				compressions = []string{"none", "bzip2", "zstd"}
			}
			dir := t.TempDir()
			sec := filepath.Join(dir, "k.sec")
			script := nixtest.FixtureScript(t) + " && for c in " + strings.Join(compressions, " ") + "; do " +
				`nix --extra-experimental-features nix-command copy --to "file://` + dir + `/$c?compression=$c" "$hello" || exit 1; done && ` +
				"nix-store --generate-binary-cache-key nix-e2e-1 " + sec + " " + dir + "/k.pub && " +
				`nix --extra-experimental-features nix-command copy --to "file://` + dir + `/signed?compression=zstd&write-nar-listing=1&index-debug-info=1&secret-key=` + sec + `" "$hello"`
			if out, err := v.FreshStore(t, script); err != nil {
				t.Fatalf("%s: %v\n%s", v.Full, err, out)
			}
			for _, c := range compressions {
				if problems, stderr, ok := verifyCmd(t, filepath.Join(dir, c)); !ok || len(problems) != 0 || !strings.Contains(stderr, "3 narinfos") {
					t.Errorf("%s: problems in %s's nix copy:\n%s\n%s", c, v.Full, strings.Join(problems, "\n"), stderr)
				}
			}

			signed := filepath.Join(dir, "signed")
			if ls, _ := filepath.Glob(filepath.Join(signed, "*.ls")); len(ls) != len(fx.Closure) {
				t.Fatalf("nix copy wrote %d listings, want %d", len(ls), len(fx.Closure))
			}
			if problems, stderr, ok := verifyCmd(t, "--public-key", filepath.Join(dir, "k.pub"), signed); !ok || len(problems) != 0 {
				t.Errorf("signed cache with Nix's key:\n%s\n%s", strings.Join(problems, "\n"), stderr)
			}
			other := filepath.Join(dir, "other.pub")
			nixtest.Run(t, "nix-store", "--generate-binary-cache-key", "other-1", filepath.Join(dir, "other.sec"), other)
			problems, _, ok := verifyCmd(t, "--public-key", other, signed)
			var want []string
			for _, p := range []string{fx.Hello, fx.Libgreet} {
				want = append(want, strings.SplitN(filepath.Base(p), "-", 2)[0]+".narinfo: no signature by a given key (signed only by nix-e2e-1)")
			}
			sort.Strings(want)
			var got []string
			for _, p := range problems {
				got = append(got, filepath.Base(p))
			}
			if d := cmp.Diff(want, got); d != "" || ok {
				t.Errorf("verify with another key: exit 0 = %v, problems (-want +got):\n%s", ok, d)
			}

			lsFile := filepath.Join(signed, strings.SplitN(filepath.Base(fx.Hello), "-", 2)[0]+".ls")
			data, err := os.ReadFile(lsFile)
			if err != nil {
				t.Fatal(err)
			}
			damaged := strings.Replace(string(data), `"executable":true,`, "", 1)
			if damaged == string(data) {
				t.Fatalf("%s has no executable file: %s", lsFile, data)
			}
			if err := os.WriteFile(lsFile, []byte(damaged), 0o644); err != nil {
				t.Fatal(err)
			}
			if problems, _, ok := verifyCmd(t, signed); ok || len(problems) != 1 || !strings.Contains(problems[0], "does not match the NAR") {
				t.Errorf("damaged listing: exit 0 = %v, problems %q", ok, problems)
			}
		})
	}
}
