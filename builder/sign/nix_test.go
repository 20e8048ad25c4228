package sign_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// nixKey makes a key pair with nix-store --generate-binary-cache-key and
// returns the secret key file and the public key.
func nixKey(t *testing.T, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	sec, pub := filepath.Join(dir, name+".sec"), filepath.Join(dir, name+".pub")
	nixtest.Run(t, "nix-store", "--generate-binary-cache-key", name, sec, pub)
	p, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sec, string(p)
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	nixtest.Run(t, "cp", "-r", "--no-preserve=mode", src, dst)
	return dst
}

func narInfos(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := cachedir.NarInfoFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
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
	sec, _ := nixKey(t, "e2e-1")
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

// realise substitutes path into a fresh chroot store (nix-store --store
// DIR: Nix 2.8 keeps it under DIR/nix/store) from the cache, with
// require-sigs and only pub trusted.
func realise(t *testing.T, cache, pub, path string) (string, error) {
	t.Helper()
	root := t.TempDir()
	cmd := exec.Command("nix-store", "--store", root, "--realise", path,
		"--option", "substituters", "file://"+cache,
		"--option", "trusted-public-keys", pub,
		"--option", "require-sigs", "true")
	out, err := cmd.CombinedOutput()
	if err == nil {
		if _, serr := os.Stat(filepath.Join(root, path)); serr != nil {
			t.Errorf("nix-store -r succeeded but %s is not in the fresh store: %v\n%s", path, serr, out)
		}
	}
	return string(out), err
}

// A cache built and signed by mkbinarycache is substituted by a store that
// requires signatures and trusts our key, and refused by one that does not.
func TestNixSubstitutesSignedCache(t *testing.T) {
	fx := nixtest.BuildFixture(t)
	dir := filepath.Join(t.TempDir(), "cache")
	var stderr bytes.Buffer
	env := cli.Env{Getenv: os.Getenv, Stdout: &stderr, Stderr: &stderr}
	if code := cli.Main(context.Background(), []string{"--out", dir, "--quiet", fx.Hello}, env); code != 0 {
		t.Fatalf("build cache: exit %d: %s", code, stderr.String())
	}

	keyDir := t.TempDir()
	sec, pubFile := filepath.Join(keyDir, "k.sec"), filepath.Join(keyDir, "k.pub")
	if code := cli.Main(context.Background(), []string{"keygen", "mkbinarycache-e2e-1",
		"--secret-key-file", sec, "--public-key-file", pubFile}, env); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr.String())
	}
	pub, _ := os.ReadFile(pubFile)
	_, otherPub := nixKey(t, "other-1")

	if out, err := realise(t, dir, string(pub), fx.Hello); err == nil {
		t.Fatalf("an unsigned cache was substituted with require-sigs:\n%s", out)
	}

	if code := cli.Main(context.Background(), []string{"sign", "--key-file", sec, dir}, env); code != 0 {
		t.Fatalf("sign: exit %d: %s", code, stderr.String())
	}
	out, err := realise(t, dir, string(pub), fx.Hello)
	if err != nil {
		t.Fatalf("the signed cache was not substituted: %v\n%s", err, out)
	}
	if !strings.Contains(out, "copying path '"+fx.Hello+"' from 'file://"+dir+"'") {
		t.Errorf("no \"copying path\" for hello:\n%s", out)
	}

	out, err = realise(t, dir, otherPub, fx.Hello)
	if err == nil {
		t.Fatalf("substituted with only another key trusted:\n%s", out)
	}
	if !strings.Contains(out, "is not signed by any of the keys in 'trusted-public-keys'") {
		t.Errorf("refused, but not for the signature:\n%s", out)
	}

	// And verify agrees with Nix.
	stderr.Reset()
	if code := cli.Main(context.Background(), []string{"verify", "--public-key", string(pub), dir}, env); code != 0 {
		t.Errorf("verify with our key: exit %d: %s", code, stderr.String())
	}
}
