package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// An --xz-program that exits 0 with garbage fails the path it compressed,
// naming the path and the program, and no narinfo points to its output.
func TestBrokenXZProgram(t *testing.T) {
	s := testkit.NewStore(t)
	c := s.Add(t,
		testkit.Path{Name: "small", Files: map[string]string{"a": "a"}},
		// Over compress.XZProgramMinSize: the program compresses it.
		testkit.Path{Name: "big", Files: map[string]string{"data": strings.Repeat("nix store path closure ", 100000)}})
	big := s.Path("big")
	prog := filepath.Join(t.TempDir(), "xz")
	testkit.Must(t, os.WriteFile(prog, []byte("#!/bin/sh\ncat >/dev/null\nprintf 'not xz at all'\n"), 0o755))
	dir := filepath.Join(t.TempDir(), "cache")
	var entries []string
	for _, p := range c {
		entries = append(entries, entryOf(p))
	}
	data, err := json.Marshal(map[string]any{"outputs": map[string]string{"out": dir}, "closure": json.RawMessage("[" + strings.Join(entries, ",") + "]")})
	testkit.Must(t, err)
	code, _, stderr := runMain("--attrs", writeTemp(t, "attrs.json", string(data)), "--store-dir", s.Dir,
		"--compression", "xz", "--xz-program", prog, "--quiet")
	if code != cli.ExitFailure || !strings.Contains(stderr, big) || !strings.Contains(stderr, prog+" exited without error, but its output does not decompress to its input") {
		t.Errorf("exit %d, stderr %q: want %d and an error naming %s and %s", code, stderr, cli.ExitFailure, big, prog)
	}
	if _, err := os.Stat(filepath.Join(dir, cachedir.NarInfoName(big))); !os.IsNotExist(err) {
		t.Errorf("%s has a narinfo: %v", big, err)
	}
	testkit.CheckCache(t, dir)
}
