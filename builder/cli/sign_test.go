package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

// cliRun runs the command and returns its exit code, stdout and stderr.
func cliRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, Env{Getenv: func(string) string { return "" }, Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

// fakeCacheCLI writes a cache of one store path of a fake store through
// --attrs, with extra attributes, and returns the cache dir.
func fakeCacheCLI(t *testing.T, extra map[string]any, flags ...string) string {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	p := filepath.Join(store, "11111111111111111111111111111111-hello")
	os.MkdirAll(filepath.Join(p, "bin"), 0o755)
	os.WriteFile(filepath.Join(p, "bin", "hello"), []byte("#!/bin/sh\necho hello\n"), 0o755)
	var nar bytes.Buffer
	if err := nardump.Dump(&nar, p); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nar.Bytes())
	out := filepath.Join(t.TempDir(), "cache")
	a := map[string]any{
		"outputs": map[string]string{"out": out},
		"closure": []map[string]any{{
			"path": p, "narSize": nar.Len(), "references": []string{},
			"narHash": nixhash.MustNewHash(nixhash.SHA256, sum[:]).Format(nixhash.NixBase32, true),
		}},
	}
	for k, v := range extra {
		a[k] = v
	}
	data, _ := json.Marshal(a)
	attrsFile := filepath.Join(t.TempDir(), "attrs.json")
	os.WriteFile(attrsFile, data, 0o644)
	args := append([]string{"--attrs", attrsFile, "--store-dir", store, "--quiet"}, flags...)
	if code, _, stderr := cliRun(t, args...); code != 0 {
		t.Fatalf("build cache: exit %d: %s", code, stderr)
	}
	return out
}

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	sec, pub := filepath.Join(dir, "k.sec"), filepath.Join(dir, "k.pub")
	if code, _, stderr := cliRun(t, "keygen", "test.example.org-1", "--secret-key-file", sec, "--public-key-file", pub); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	if st, _ := os.Stat(sec); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file mode: %v", st)
	}
	pubKey, _ := os.ReadFile(pub)
	if !strings.HasPrefix(string(pubKey), "test.example.org-1:") || strings.HasSuffix(string(pubKey), "\n") {
		t.Errorf("public key file %q", pubKey)
	}
	if code, _, stderr := cliRun(t, "keygen", "again", "--secret-key-file", sec); code != 1 || !strings.Contains(stderr, "not overwriting") {
		t.Errorf("keygen over an existing file: %d %s", code, stderr)
	}

	cache := fakeCacheCLI(t, nil)
	// Unsigned: verify with the key fails, one line per problem, on stdout.
	code, stdout, _ := cliRun(t, "verify", "--public-key", pub, cache)
	if code != ExitFailure || !strings.HasSuffix(strings.TrimSpace(stdout), ".narinfo: not signed") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("verify unsigned: exit %d, stdout %q", code, stdout)
	}
	// Flags after the directory work too.
	if code, _, stderr := cliRun(t, "sign", cache, "--key-file", sec); code != 0 {
		t.Fatalf("sign: %d %s", code, stderr)
	}
	code, stdout, stderr := cliRun(t, "verify", cache, "--public-key", "other:"+strings.Repeat("A", 43)+"= "+string(pubKey))
	if code != 0 || stdout != "" || !strings.Contains(stderr, "no problems") {
		t.Errorf("verify signed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Idempotent.
	before, _ := os.ReadFile(filepath.Join(cache, "11111111111111111111111111111111.narinfo"))
	if code, _, stderr := cliRun(t, "sign", "--key-file", sec, cache); code != 0 || !strings.Contains(stderr, "1 already signed") {
		t.Errorf("sign again: %d %s", code, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(cache, "11111111111111111111111111111111.narinfo"))
	if d := cmp.Diff(string(before), string(after)); d != "" {
		t.Errorf("second sign changed the narinfo:\n%s", d)
	}

	code, stdout, _ = cliRun(t, "keygen", "printed")
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
		if code, _, stderr := cliRun(t, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	for _, sub := range []string{"sign", "verify", "keygen"} {
		if code, _, stderr := cliRun(t, sub, "--help"); code != 0 || !strings.Contains(stderr, "Usage: mkbinarycache "+sub) {
			t.Errorf("%s --help: %d %q", sub, code, stderr)
		}
	}
	if code, _, _ := cliRun(t, "verify", filepath.Join(t.TempDir(), "missing")); code != ExitFailure {
		t.Errorf("verify of a missing dir: exit %d", code)
	}
}

func TestNarListingFlags(t *testing.T) {
	hasLS := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "11111111111111111111111111111111.ls"))
		return err == nil
	}
	if dir := fakeCacheCLI(t, nil); hasLS(dir) {
		t.Errorf("listing written without asking")
	}
	if dir := fakeCacheCLI(t, nil, "--nar-listing"); !hasLS(dir) {
		t.Errorf("--nar-listing: no listing")
	}
	if dir := fakeCacheCLI(t, map[string]any{"narListing": true, "indexDebugInfo": true}); !hasLS(dir) {
		t.Errorf("narListing attribute: no listing")
	} else if code, stdout, stderr := cliRun(t, "verify", dir); code != 0 {
		t.Errorf("verify: %d %s %s", code, stdout, stderr)
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	b := fs.Bool("b", false, "")
	s := fs.String("s", "", "")
	pos, err := parseInterspersed(fs, []string{"x", "-b", "y", "-s", "v", "--", "-z", "w"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"x", "y", "-z", "w"}, pos); d != "" || !*b || *s != "v" {
		t.Errorf("pos (-want +got): %s; b=%v s=%q", d, *b, *s)
	}
}
