package nixtest

// The helpers here take no testing.TB: the benchmark
// (builder/cmd/cachebench) uses them too, outside any test.

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// FindRoot returns the first directory from dir upward that holds go.mod.
func FindRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or any parent", dir)
		}
		d = parent
	}
}

// Scratch is a per-user directory for artifacts shared by processes (go
// test runs packages in parallel, each with its own sync.Onces).
func Scratch() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mkbinarycache-nixtest-%d", os.Geteuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create scratch dir: %w", err)
	}
	return dir, nil
}

// publish moves the freshly made directory tmp to a name derived from its
// content, so that concurrent processes share one copy and reruns reuse it.
// Entries with prefix older than a day are pruned: each change of the
// builder's code makes a new binary.
func publish(tmp, dir, prefix, sum string) (string, error) {
	final := filepath.Join(dir, prefix+sum[:20])
	if err := os.Rename(tmp, final); err != nil {
		// Another process won the race; its copy is identical.
		if _, statErr := os.Stat(final); statErr != nil {
			return "", fmt.Errorf("publish %s: %w", final, err)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return "", fmt.Errorf("remove %s: %w", tmp, err)
		}
	}
	// Mark it used so pruning by others spares it.
	now := time.Now()
	if err := os.Chtimes(final, now, now); err != nil {
		return "", fmt.Errorf("touch %s: %w", final, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read scratch dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), prefix) || p == final {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(p) // best effort: a leftover is harmless
		}
	}
	return final, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckStatic fails for a dynamically linked ELF file: it would not run
// inside the sandbox, which holds only the store paths of the closure.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; a static binary is needed in the sandbox", path)
		}
	}
	return nil
}

// GoBuild builds the main package pkg of the module at root as a static
// (CGO_ENABLED=0) binary DIR/bin/name and returns DIR, a directory in
// Scratch named after the binary's hash.
func GoBuild(root, pkg, name string) (string, error) {
	dir, err := Scratch()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	bin := filepath.Join(tmp, "bin", name)
	// -trimpath and -buildvcs=false keep the binary, and so its store path,
	// the same across checkouts and commits that do not change the code.
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := proc.CombinedOutput(cmd, proc.Timeout); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	if err := CheckStatic(bin); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return publish(tmp, dir, name+"-", sum)
}

// busyboxCandidates are where Debian's busybox-static puts the binary.
var busyboxCandidates = []string{"/bin/busybox", "/usr/bin/busybox"}

// MakeBusyboxDir returns a directory in Scratch holding only bin/busybox, a
// copy of the static busybox.
func MakeBusyboxDir() (string, error) {
	var src string
	for _, c := range busyboxCandidates {
		if _, err := os.Stat(c); err == nil {
			src = c
			break
		}
	}
	if src == "" {
		return "", fmt.Errorf("no busybox in %v: install busybox-static", busyboxCandidates)
	}
	if err := CheckStatic(src); err != nil {
		return "", fmt.Errorf("%w (install busybox-static)", err)
	}
	dir, err := Scratch()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		return "", fmt.Errorf("create busybox dir: %w", err)
	}
	if err := CopyFile(src, filepath.Join(tmp, "bin", "busybox"), 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	sum, err := fileSHA256(src)
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return publish(tmp, dir, "busybox-", sum)
}

// CopyFile copies src to dst with permissions perm, creating dst's parents.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// NixString quotes s as a Nix string literal.
func NixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `${`, `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// attrsScript copies .attrs.json to the output. Nix 2.8 neither exports $out
// nor sets PATH with structured attrs, and in the sandbox NIX_ATTRS_JSON_FILE
// names a host path: the files are in the working directory (/build).
// .attrs.sh has the output path on a line of its own.
// The expression prepends B=<busybox>: attributes are not in the
// environment either.
const attrsScript = `set -e
out=$($B sed -n "s/^declare -A outputs=(\['out'\]='\([^']*\)'.*/\1/p" .attrs.sh)
[ -n "$out" ] || { $B echo "no outputs.out in .attrs.sh" >&2; $B cat .attrs.sh >&2; exit 1; }
$B cp .attrs.json "$out"
`

// AttrsExpr is a Nix expression for a derivation with __structuredAttrs =
// true and exportReferencesGraph.closure = rootExprs (Nix expressions for
// store paths, e.g. builtins.storePath "/nix/store/…" or a derivation),
// whose output is its .attrs.json. bb is a directory holding bin/busybox.
// Extra attributes (key -> Nix expression) override the defaults.
func AttrsExpr(bb string, extra map[string]string, rootExprs []string) string {
	attrs := map[string]string{
		"name":                  `"attrs"`,
		"system":                "builtins.currentSystem",
		"builder":               `"${bb}/bin/busybox"`,
		"args":                  `[ "sh" "-c" ("B=${bb}/bin/busybox\n" + ` + NixString(attrsScript) + `) ]`,
		"__structuredAttrs":     "true",
		"exportReferencesGraph": "{ closure = [ " + strings.Join(rootExprs, " ") + " ]; }",
	}
	for k, v := range extra {
		attrs[k] = v
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "let bb = builtins.path { path = %s; name = \"busybox\"; }; in\nderivation {\n", NixString(bb))
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s = %s;\n", NixString(k), attrs[k])
	}
	b.WriteString("}\n")
	return b.String()
}

// StorePathExpr is the Nix expression for an existing store path with the
// context exportReferencesGraph requires of its roots (they must be inputs).
func StorePathExpr(p string) string {
	return "(builtins.storePath " + NixString(p) + ")"
}

// Exec runs a command and returns its stdout; the error carries the command
// line and the combined output, which is what one needs to see when a nix
// command fails.
func Exec(env []string, name string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	combined := &lockedBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	cmd.Stderr = combined
	if err := proc.Run(cmd, proc.Timeout); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(append([]string{name}, args...), " "), err, combined.Bytes())
	}
	return stdout.Bytes(), nil
}

// lockedBuffer is written by the goroutines that copy a command's stdout
// and stderr at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}
