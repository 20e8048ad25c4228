package nixquery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
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

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestTool(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	tool := filepath.Join(dir, "nix-store")
	for _, d := range []string{dir, other} {
		if err := os.WriteFile(filepath.Join(d, "nix-store"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := Nix{Getenv: envOf(map[string]string{"NIX_BIN_DIR": dir, "PATH": other})}
	if got := n.Tool("nix-store"); got != tool {
		t.Errorf("with NIX_BIN_DIR: %s, want %s", got, tool)
	}
	n = Nix{Getenv: envOf(map[string]string{"PATH": other})}
	if got, want := n.Tool("nix-store"), filepath.Join(other, "nix-store"); got != want {
		t.Errorf("from the PATH given: %s, want %s", got, want)
	}
	if got := (Nix{}).Tool("no-such-tool-here"); got != "no-such-tool-here" {
		t.Errorf("a missing tool: %s, want the bare name", got)
	}
	// The test binary's ancestors are go and shells, not Nix.
	if d := nixAncestorDirs(); len(d) != 0 {
		t.Errorf("Nix ancestors of a test: %q", d)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	xz := filepath.Join(dir, "xz")
	if err := os.WriteFile(xz, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := LookPath(envOf(map[string]string{"PATH": "/no/such/dir:" + dir}), "xz"); got != xz {
		t.Errorf("LookPath = %q, want %q", got, xz)
	}
	// The process's own PATH is not read, and "" (the working directory)
	// never counts.
	t.Chdir(dir)
	if got := LookPath(envOf(map[string]string{"PATH": ":."}), "xz"); got != "" {
		t.Errorf("LookPath with a relative PATH = %q, want none", got)
	}
}

func TestStorePaths(t *testing.T) {
	const store = "/nix/store"
	hello := store + "/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12"
	dir := t.TempDir()
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	result := link("result", hello)
	chain := link("result-chain", "result")
	got, err := StorePaths(store, []string{hello, result, chain, hello + ".drv"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{hello, hello, hello, hello + ".drv"}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// A directory holding a flake, which Nix would evaluate, is refused by
	// name, as is everything else that is not a store path.
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = _: throw \"evaluated\"; }"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		dir, ".", "", "nixpkgs#hello", "--jobs", "-", "hello",
		hello + "/bin/hello", store, store + "/", "/nix/store/../store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12",
		link("elsewhere", "/etc"), link("loop", "loop"), link("dangling", "/nix/store/no-such"),
	} {
		if _, err := StorePaths(store, []string{hello, bad}); err == nil {
			t.Errorf("StorePaths(%q) accepted it", bad)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("StorePaths(%q): the error does not name the argument: %v", bad, err)
		}
	}
}

// TestRefusedBeforeNix: whatever the caller hands over, Nix is never run on
// a path that is not a store path; nix here is a program that records
// being run.
func TestRefusedBeforeNix(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	for _, name := range []string{"nix", "nix-store"} {
		script := "#!/bin/sh\ntouch " + ran + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := Nix{StoreDir: "/nix/store", Getenv: envOf(map[string]string{"NIX_BIN_DIR": dir})}
	ctx := context.Background()
	bad := []string{"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-ok", "."}
	if _, err := n.PathInfo(ctx, bad); err == nil {
		t.Error("PathInfo accepted a non-store path")
	}
	if _, err := n.BuildClosure(ctx, bad); err == nil {
		t.Error("BuildClosure accepted a non-store path")
	}
	if _, err := n.DrvOutputs(ctx, "x.drv"); err == nil {
		t.Error("DrvOutputs accepted a non-store path")
	}
	if _, err := n.BuildLog(ctx, "./x.drv"); err == nil {
		t.Error("BuildLog accepted a non-store path")
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("Nix was run")
	}
}

// TestBuildLog reads back what a real build printed.
func TestBuildLog(t *testing.T) {
	nixtest.Require(t)
	bb := nixtest.BusyboxDir(t)
	nonce := fmt.Sprintf("build-log-%d", time.Now().UnixNano())
	expr := fmt.Sprintf(`let bb = builtins.path { path = %s; name = "busybox"; }; in derivation {
		name = "log"; system = builtins.currentSystem; builder = "${bb}/bin/busybox";
		args = [ "sh" "-c" "echo %s; echo > $out" ]; }`, nixtest.NixString(bb), nonce)
	drv := strings.TrimSpace(nixtest.Run(t, "nix-instantiate", "--expr", expr))
	nixtest.Run(t, "nix-build", "--option", "sandbox", "true", "--no-out-link", drv)
	n := Nix{StoreDir: "/nix/store", Getenv: os.Getenv}
	log, err := n.BuildLog(context.Background(), drv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), nonce) {
		t.Errorf("the build log of %s lacks %q:\n%s", drv, nonce, log)
	}
	outs, err := n.DrvOutputs(context.Background(), drv)
	if err != nil || len(outs) != 1 {
		t.Errorf("DrvOutputs(%s) = %q, %v", drv, outs, err)
	}
}
