package verify_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

func problems(t *testing.T, o verify.Options) []string {
	t.Helper()
	var got []string
	if _, err := verify.Cache(context.Background(), o, func(p verify.Problem) {
		got = append(got, filepath.Base(p.File)+": "+p.Msg)
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

// Caches written by nix copy pass, whatever the compression.
func TestAcceptsNixCopy(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	for _, c := range []string{"none", "xz", "bzip2", "zstd"} {
		t.Run(c, func(t *testing.T) {
			dir := nixtest.NixCopy(t, c, fx.Hello)
			if got := problems(t, verify.Options{Dir: dir}); len(got) != 0 {
				t.Errorf("problems in nix copy's cache:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// A nix copy cache with listings, the debuginfo index and signatures made
// by Nix passes with Nix's key; with another key, the two input-addressed
// paths are unsigned while busybox, content-addressed, needs no signature.
func TestAcceptsSignedNixCopyWithListings(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	keys := t.TempDir()
	sec, pubFile := filepath.Join(keys, "k.sec"), filepath.Join(keys, "k.pub")
	nixtest.Run(t, "nix-store", "--generate-binary-cache-key", "nix-e2e-1", sec, pubFile)
	dir := t.TempDir()
	nixtest.Run(t, "nix", "--extra-experimental-features", "nix-command", "copy", "--to",
		"file://"+dir+"?compression=zstd&write-nar-listing=1&index-debug-info=1&secret-key="+sec, fx.Hello)
	if ls, _ := filepath.Glob(filepath.Join(dir, "*.ls")); len(ls) != len(fx.Closure) {
		t.Fatalf("nix copy wrote %d listings, want %d", len(ls), len(fx.Closure))
	}
	pub, err := sign.ParsePublicKey(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{pub}}); len(got) != 0 {
		t.Errorf("problems:\n%s", strings.Join(got, "\n"))
	}

	_, other, _ := signature.GenerateKeypair("other-1", nil)
	got := problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{other}})
	var want []string
	for _, p := range []string{fx.Hello, fx.Libgreet} {
		want = append(want, strings.SplitN(filepath.Base(p), "-", 2)[0]+".narinfo: no signature by a given key (signed only by nix-e2e-1)")
	}
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems with another key (-want +got):\n%s", d)
	}

	// A listing that Nix wrote, then damaged, is caught.
	lsFile := filepath.Join(dir, strings.SplitN(filepath.Base(fx.Hello), "-", 2)[0]+".ls")
	data, _ := os.ReadFile(lsFile)
	os.WriteFile(lsFile, []byte(strings.Replace(string(data), `"executable":true,`, "", 1)), 0o644)
	if got := problems(t, verify.Options{Dir: dir}); len(got) != 1 || !strings.Contains(got[0], "does not match the NAR") {
		t.Errorf("damaged listing: %q", got)
	}
}
