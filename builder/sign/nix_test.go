package sign_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// nixKey makes a key pair with nix-store --generate-binary-cache-key and
// returns the secret key file.
func nixKey(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	sec := filepath.Join(dir, name+".sec")
	nixtest.Run(t, "nix-store", "--generate-binary-cache-key", name, sec, filepath.Join(dir, name+".pub"))
	return sec
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	nixtest.Run(t, "cp", "-r", "--no-preserve=mode", src, dst)
	return dst
}

func narInfos(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _, err := testkit.OpenCache(t, dir).NarInfos()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	return out
}

// Our signatures of a nix copy cache are Nix's, byte for byte: the same
// key signs the same fingerprint (ed25519 is deterministic) and the Sig
// line lands where Nix puts it.
func TestSignMatchesNixStoreSign(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	sec := nixKey(t, "e2e-1")
	nixDir := nixtest.NixCopy(t, "zstd", fx.Hello)
	ourDir := copyDir(t, nixDir)
	nixtest.Run(t, "nix", "--extra-experimental-features", "nix-command", "store", "sign",
		"--store", "file://"+nixDir, "--key-file", sec, "--recursive", fx.Hello)
	key, err := sign.LoadSecretKeyFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: ourDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Added != len(fx.Closure) {
		t.Errorf("signed %+v, want %d added", stats, len(fx.Closure))
	}
	want, got := narInfos(t, nixDir), narInfos(t, ourDir)
	if len(want) != len(fx.Closure) {
		t.Fatalf("nix copy wrote %d narinfos, want %d", len(want), len(fx.Closure))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("narinfos signed by nix store sign (-) and by us (+):\n%s", d)
	}
}

// A path valid in the local store is signed only as the store records it:
// a narinfo pointed at another path's NAR, with that NAR's hashes and
// sizes, checks against its NAR, but not against the store. Real Nix
// answers (nixquery, as the sign command asks it).
func TestSignChecksLocalStore(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	key, err := sign.LoadSecretKeyFile(nixKey(t, "local-1"))
	testkit.Must(t, err)
	local := nixquery.Nix{StoreDir: "/nix/store"}.ValidPathInfo
	nixDir := nixtest.NixCopy(t, "zstd", fx.Hello)

	dir := copyDir(t, nixDir)
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, Local: local}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sign.DirStats{Files: len(fx.Closure), Added: len(fx.Closure)}, stats); d != "" {
		t.Errorf("a cache of local paths (-want +got):\n%s", d)
	}

	nis := testkit.NarInfos(t, nixDir)
	hello, lib := nis[fx.Hello], nis[fx.Libgreet]
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"another path's NAR", map[string]string{"URL": lib.URL, "Compression": lib.Compression,
			"FileHash": lib.FileHash.String(), "FileSize": strconv.FormatUint(lib.FileSize, 10),
			"NarHash": lib.NarHash.String(), "NarSize": strconv.FormatUint(lib.NarSize, 10)}, "NarHash is"},
		{"a reference dropped", map[string]string{"References": ""}, "the narinfo's References are"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, nixDir)
			f := filepath.Join(dir, cachedir.NarInfoName(hello.StorePath))
			edit(t, f, tc.set)
			before := readFile(t, f)
			stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, Local: local}, nil)
			want := f + ": not signed: " + fx.Hello + " is valid in the local store, which the narinfo contradicts: " + tc.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
			if stats.Failed != 1 || stats.Added != len(fx.Closure)-1 || stats.CacheOnly != 0 {
				t.Errorf("stats %+v, want hello refused and the rest signed", stats)
			}
			if got := readFile(t, f); got != before {
				t.Errorf("the refused narinfo changed:\n%s", got)
			}
		})
	}
}
