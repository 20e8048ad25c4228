package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// The tests here drive the command: in-process through cli.Main
// (runMain), where no Nix and no second process are needed, and as the
// built binary (binary, mkbinarycache) where a run is killed, measured,
// put in a namespace or compared with Nix.

// runMain runs the command in-process with an empty environment and
// returns its exit code, stdout and stderr.
func runMain(args ...string) (code int, stdout, stderr string) {
	return runMainEnv(func(string) string { return "" }, args...)
}

// runMainEnv is runMain with the environment getenv gives.
func runMainEnv(getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Main(context.Background(), args, cli.Env{Getenv: getenv, Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// binary is the built command, built once per test process.
func binary(t testing.TB) string {
	t.Helper()
	return filepath.Join(nixtest.BuildBinary(t), "bin", "mkbinarycache")
}

// runBinary runs the built command with env added to the test's
// environment and returns its exit code (-1 if a signal ended it), stdout
// and stderr.
func runBinary(t testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Bounded: a run that hangs fails its test, naming it, rather than the
	// package's timeout. Errorf, not Fatalf: tests call this from goroutines.
	if err := proc.Run(cmd, proc.Timeout); err != nil {
		if _, exited := err.(*exec.ExitError); !exited {
			t.Errorf("mkbinarycache %s: %v", strings.Join(args, " "), err)
			return -1, out.String(), errb.String() + err.Error()
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// mkbinarycache runs the built command, failing the test with its output
// unless it exits 0, and returns its stdout and stderr, in that order.
func mkbinarycache(t testing.TB, args ...string) string {
	t.Helper()
	code, stdout, stderr := runBinary(t, nil, args...)
	if code != 0 {
		t.Fatalf("mkbinarycache %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout + stderr
}

// entry is the structured-attrs closure entry of a path, as Nix writes it.
func entry(path, hash string, size uint64, refs ...string) string {
	r := `[]`
	if len(refs) > 0 {
		r = `["` + strings.Join(refs, `","`) + `"]`
	}
	return fmt.Sprintf(`{"path":%q,"narHash":%q,"narSize":%d,"references":%s}`, path, hash, size, r)
}

// entryOf is the entry of p, with what Nix recorded for it.
func entryOf(p closure.Path) string {
	return entry(p.StorePath, narHash(p), p.NarSize, p.References...)
}

// narHash is p's NAR hash as Nix writes it: sha256:<nix32>.
func narHash(p closure.Path) string { return p.NarHash.Format(nixhash.NixBase32, true) }

// attrsJSON is a structured-attrs file with the closure of entries.
func attrsJSON(entries ...string) string {
	return `{"closure":[` + strings.Join(entries, ",") + `]}`
}

// writeTemp writes data to a file named name in a new temporary directory.
func writeTemp(t testing.TB, name, data string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	testkit.Must(t, os.WriteFile(f, []byte(data), 0o644))
	return f
}
