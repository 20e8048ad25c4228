package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// helloCache writes a cache of one store path, hello, of a fake store
// through --attrs, with extra attributes and flags, and returns the cache
// dir and the path.
func helloCache(t *testing.T, extra map[string]any, flags ...string) (dir, hello string) {
	t.Helper()
	s := testkit.NewStore(t)
	p := s.Add(t, testkit.Path{Name: "hello", Executables: map[string]string{"bin/hello": "#!/bin/sh\necho hello\n"}})[0]
	dir = filepath.Join(t.TempDir(), "cache")
	a := map[string]any{"outputs": map[string]string{"out": dir}, "closure": json.RawMessage("[" + entryOf(p) + "]")}
	for k, v := range extra {
		a[k] = v
	}
	data, err := json.Marshal(a)
	testkit.Must(t, err)
	args := append([]string{"--attrs", writeTemp(t, "attrs.json", string(data)), "--store-dir", s.Dir, "--quiet"}, flags...)
	if code, _, stderr := runMain(args...); code != 0 {
		t.Fatalf("build cache: exit %d: %s", code, stderr)
	}
	return dir, p.StorePath
}

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	sec, pub := filepath.Join(dir, "k.sec"), filepath.Join(dir, "k.pub")
	if code, _, stderr := runMain("keygen", "test.example.org-1", "--secret-key-file", sec, "--public-key-file", pub); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	if st, _ := os.Stat(sec); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file mode: %v", st)
	}
	pubKey, _ := os.ReadFile(pub)
	if !strings.HasPrefix(string(pubKey), "test.example.org-1:") || strings.HasSuffix(string(pubKey), "\n") {
		t.Errorf("public key file %q", pubKey)
	}
	if code, _, stderr := runMain("keygen", "again", "--secret-key-file", sec); code != 1 || !strings.Contains(stderr, "not overwriting") {
		t.Errorf("keygen over an existing file: %d %s", code, stderr)
	}

	cache, hello := helloCache(t, nil)
	// Unsigned: verify with the key fails, one line per problem, on stdout.
	code, stdout, _ := runMain("verify", "--public-key", pub, cache)
	if code != cli.ExitFailure || !strings.HasSuffix(strings.TrimSpace(stdout), ".narinfo: not signed") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("verify unsigned: exit %d, stdout %q", code, stdout)
	}
	// Flags after the directory work too. The fake store's paths are
	// nowhere but in the cache: a warning says so.
	if code, _, stderr := runMain("sign", cache, "--key-file", sec); code != 0 || !strings.Contains(stderr, "warning: 1 narinfos signed for paths the local store does not have: their NARs match them, but the content is vouched for only as far as the cache itself") {
		t.Fatalf("sign: %d %s", code, stderr)
	}
	code, stdout, stderr := runMain("verify", cache, "--public-key", "other:"+strings.Repeat("A", 43)+"= "+string(pubKey))
	if code != 0 || stdout != "" || !strings.Contains(stderr, "no problems") {
		t.Errorf("verify signed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Idempotent.
	before, _ := os.ReadFile(filepath.Join(cache, cachedir.NarInfoName(hello)))
	if code, _, stderr := runMain("sign", "--key-file", sec, cache); code != 0 || !strings.Contains(stderr, "1 already signed") {
		t.Errorf("sign again: %d %s", code, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(cache, cachedir.NarInfoName(hello)))
	if d := cmp.Diff(string(before), string(after)); d != "" {
		t.Errorf("second sign changed the narinfo:\n%s", d)
	}

	// A signature by the key's name that does not verify is kept, the
	// narinfo refused, unless --replace-invalid.
	niFile := filepath.Join(cache, cachedir.NarInfoName(hello))
	signed, _ := os.ReadFile(niFile)
	bogus := regexp.MustCompile(`(?m)^Sig: (test\.example\.org-1):.*$`).ReplaceAllString(string(signed), "Sig: $1:"+strings.Repeat("A", 86)+"==")
	testkit.Must(t, os.WriteFile(niFile, []byte(bogus), 0o644))
	if code, _, stderr := runMain("sign", "--key-file", sec, cache); code != cli.ExitFailure || !strings.Contains(stderr, "--replace-invalid") {
		t.Errorf("sign over an invalid signature: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(niFile); string(after) != bogus {
		t.Errorf("the refused narinfo changed:\n%s", after)
	}
	if code, _, stderr := runMain("sign", "--key-file", sec, "--replace-invalid", cache); code != 0 || !strings.Contains(stderr, "replaced an invalid signature") {
		t.Errorf("sign --replace-invalid: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(niFile); string(after) != string(signed) {
		t.Errorf("--replace-invalid gave\n%s\nwant\n%s", after, signed)
	}

	// A secret key given as --public-key, or its file: a usage error that
	// never echoes the key.
	secKey, _ := os.ReadFile(sec)
	_, secData, _ := strings.Cut(strings.TrimSpace(string(secKey)), ":")
	for _, k := range []string{strings.TrimSpace(string(secKey)), sec} {
		code, stdout, stderr := runMain("verify", "--public-key", k, cache)
		if code != cli.ExitUsage || !strings.Contains(stderr, "secret key") || strings.Contains(stdout+stderr, secData[:8]) {
			t.Errorf("verify --public-key SECRET: exit %d, stdout %q, stderr %q: want a usage error that does not echo the key", code, stdout, stderr)
		}
	}

	code, stdout, _ = runMain("keygen", "printed")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "printed:") || len(lines[0]) != len("printed:")+88 || len(lines[1]) != len("printed:")+44 {
		t.Errorf("keygen to stdout: %d %q", code, stdout)
	}
}

func TestSubcommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"sign", "/tmp"},
		{"sign", "--key-file", "k"},
		{"sign", "--key-file", "k", "a", "b"},
		{"verify"},
		{"verify", "--bogus", "x"},
		{"verify", "--public-key", "not-a-key", "x"},
		{"keygen"},
		{"keygen", "a:b"},
		{"keygen", "n", "--secret-key-file", "f", "--public-key-file", "f"},
	} {
		if code, _, stderr := runMain(args...); code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, cli.ExitUsage, stderr)
		}
	}
	for _, sub := range []string{"sign", "verify", "keygen"} {
		if code, _, stderr := runMain(sub, "--help"); code != 0 || !strings.Contains(stderr, "Usage: mkbinarycache "+sub) {
			t.Errorf("%s --help: %d %q", sub, code, stderr)
		}
	}
	if code, _, _ := runMain("verify", filepath.Join(t.TempDir(), "missing")); code != cli.ExitFailure {
		t.Errorf("verify of a missing dir: exit %d", code)
	}
}

func TestNarListingFlags(t *testing.T) {
	hasLS := func(dir, p string) bool {
		_, err := os.Stat(filepath.Join(dir, cachedir.ListingName(p)))
		return err == nil
	}
	if dir, p := helloCache(t, nil); hasLS(dir, p) {
		t.Errorf("listing written without asking")
	}
	if dir, p := helloCache(t, nil, "--nar-listing"); !hasLS(dir, p) {
		t.Errorf("--nar-listing: no listing")
	}
	if dir, p := helloCache(t, map[string]any{"narListing": true, "indexDebugInfo": true}); !hasLS(dir, p) {
		t.Errorf("narListing attribute: no listing")
	} else if code, stdout, stderr := runMain("verify", dir); code != 0 {
		t.Errorf("verify: %d %s %s", code, stdout, stderr)
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
	if code, _, stderr := runMain("--out", dir, "--quiet", fx.Hello); code != 0 {
		t.Fatalf("build cache: exit %d: %s", code, stderr)
	}

	keyDir := t.TempDir()
	sec, pubFile := filepath.Join(keyDir, "k.sec"), filepath.Join(keyDir, "k.pub")
	otherSec, otherPubFile := filepath.Join(keyDir, "other.sec"), filepath.Join(keyDir, "other.pub")
	for _, k := range [][]string{{"mkbinarycache-e2e-1", sec, pubFile}, {"other-1", otherSec, otherPubFile}} {
		if code, _, stderr := runMain("keygen", k[0], "--secret-key-file", k[1], "--public-key-file", k[2]); code != 0 {
			t.Fatalf("keygen: exit %d: %s", code, stderr)
		}
	}
	pub, _ := os.ReadFile(pubFile)
	otherPub, _ := os.ReadFile(otherPubFile)

	if out, err := realise(t, dir, string(pub), fx.Hello); err == nil {
		t.Fatalf("an unsigned cache was substituted with require-sigs:\n%s", out)
	}

	if code, _, stderr := runMain("sign", "--key-file", sec, dir); code != 0 {
		t.Fatalf("sign: exit %d: %s", code, stderr)
	}
	out, err := realise(t, dir, string(pub), fx.Hello)
	if err != nil {
		t.Fatalf("the signed cache was not substituted: %v\n%s", err, out)
	}
	if !strings.Contains(out, "copying path '"+fx.Hello+"' from 'file://"+dir+"'") {
		t.Errorf("no \"copying path\" for hello:\n%s", out)
	}

	out, err = realise(t, dir, string(otherPub), fx.Hello)
	if err == nil {
		t.Fatalf("substituted with only another key trusted:\n%s", out)
	}
	if !strings.Contains(out, "is not signed by any of the keys in 'trusted-public-keys'") {
		t.Errorf("refused, but not for the signature:\n%s", out)
	}

	// And verify agrees with Nix.
	if code, _, stderr := runMain("verify", "--public-key", string(pub), dir); code != 0 {
		t.Errorf("verify with our key: exit %d: %s", code, stderr)
	}
}
