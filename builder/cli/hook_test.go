package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDrvOutputs(t *testing.T) {
	drv := `Derive([("dev","/nix/store/aaaa-x-dev","",""),("out","/nix/store/bbbb-x","","")],[("/nix/store/cccc-y.drv",["out"])],[],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n"],[("out","/nix/store/bbbb-x")])`
	got, err := parseDrvOutputs(drv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"/nix/store/aaaa-x-dev", "/nix/store/bbbb-x"}, got); d != "" {
		t.Errorf("outputs (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"", "Derive(", `Derive([("out","","sha256","")],`, `Derive([("out","/nix/store/x`, `Derive([("out","/nix/store/x\`, `Derive([])`,
	} {
		if outs, err := parseDrvOutputs(bad); err == nil {
			t.Errorf("parseDrvOutputs(%q) = %q, want an error", bad, outs)
		}
	}
	if s, rest, err := atermString(`"a\"b\\c\nd\te"tail`); err != nil || s != "a\"b\\c\nd\te" || rest != "tail" {
		t.Errorf("atermString: %q %q %v", s, rest, err)
	}
}

func TestNixTool(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "nix-store")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "NIX_BIN_DIR" {
			return dir
		}
		return ""
	}
	if got := nixTool(env, "nix-store"); got != tool {
		t.Errorf("with NIX_BIN_DIR: %s, want %s", got, tool)
	}
	t.Setenv("PATH", "")
	if got := nixTool(func(string) string { return "" }, "no-such-tool-here"); got != "no-such-tool-here" {
		t.Errorf("a missing tool: %s, want the bare name", got)
	}
	// The test binary's ancestors are go and shells, not Nix.
	if d := nixAncestorDirs(); len(d) != 0 {
		t.Errorf("Nix ancestors of a test: %q", d)
	}
}

func TestReadKeepFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "keep")
	if err := os.WriteFile(f, []byte("# roots\n/nix/store/a-x\n\n  /nix/store/b-y  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readKeepFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"/nix/store/a-x", "/nix/store/b-y"}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := readKeepFile(f + "-missing"); err == nil {
		t.Errorf("a missing keep file was accepted")
	}
}
