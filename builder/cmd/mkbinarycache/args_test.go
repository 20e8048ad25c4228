package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// fakeNix is a directory of nix and nix-store programs that record their
// arguments, one run a line, in the file log, and print an empty closure.
func fakeNix(t *testing.T) (getenv func(string) string, log string) {
	dir := t.TempDir()
	log = filepath.Join(dir, "log")
	script := "#!/bin/sh\necho \"$0 $*\" >> " + log + "\necho '[]'\n"
	for _, name := range []string{"nix", "nix-store"} {
		testkit.Must(t, os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755))
	}
	return func(k string) string {
		if k == "NIX_BIN_DIR" {
			return dir
		}
		return ""
	}, log
}

// TestArgumentsReachNixAsStorePaths: an argument that is not a store path
// (or a link to one) is a usage error before Nix runs, since Nix would take
// it for an installable and evaluate a flake found in a parent directory;
// an option after a path is an option, or a usage error.
func TestArgumentsReachNixAsStorePaths(t *testing.T) {
	getenv, log := fakeNix(t)
	const store = "/nix/store"
	hello := store + "/0123456789abcdfghijklmnpqrsvwxyz-hello"
	dir := t.TempDir()
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: throw \"evaluated\"; }"), 0o644))
	result := filepath.Join(dir, "result")
	testkit.Must(t, os.Symlink(hello, result))
	out := filepath.Join(t.TempDir(), "cache")
	for _, args := range [][]string{
		{dir},
		{"."},
		{"nixpkgs#hello"},
		{hello, "--bogus"},
		{hello, "--", "--quiet"},
		{hello + "/bin/hello"},
		{"--build-closure", filepath.Join(dir, "flake.nix")},
	} {
		all := append([]string{"--out", out, "--store-dir", store}, args...)
		code, _, stderr := runMainEnv(getenv, all...)
		if code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want %d; %s", args, code, cli.ExitUsage, stderr)
		}
		if _, err := os.Stat(log); err == nil {
			ran, _ := os.ReadFile(log)
			t.Fatalf("%q: Nix ran: %s", args, ran)
		}
	}
	// ./result is the store path it links to, and --quiet after it an
	// option: Nix sees the store path alone.
	runMainEnv(getenv, "--out", out, "--store-dir", store, result, "--quiet")
	ran, err := os.ReadFile(log)
	testkit.Must(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(ran)), "\n") {
		if !strings.HasSuffix(line, " -- "+hello) {
			t.Errorf("Nix ran as %q, want the store path after --, alone", line)
		}
	}
}

func TestNegativeCounts(t *testing.T) {
	for _, args := range [][]string{
		{"--out", "x", "--jobs", "-1", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a"},
		{"--out", "x", "--threads", "-2", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a"},
		{"--out", "x", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a", "--priority", "-1"},
		{"hook", "--out", "x", "--jobs", "-1"},
		{"sign", "--key-file", "k", "--jobs", "-1", "x"},
		{"verify", "--jobs", "-1", "x"},
		{"copy", "--from", "a", "--to", "b", "--jobs", "-1"},
		{"push", "--jobs", "-1", "x", "s3://b"},
		{"push", "--threads", "-1", "x", "s3://b"},
	} {
		code, _, stderr := runMain(args...)
		if code != cli.ExitUsage || !strings.Contains(stderr, "negative") {
			t.Errorf("%q: exit %d, want %d and a word on the negative number; %s", args, code, cli.ExitUsage, stderr)
		}
	}
}
