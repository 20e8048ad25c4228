// Package nixtest is the shared harness of the end-to-end tests: it builds
// the mkbinarycache binary and the test closure (testdata/fixture.nix) with
// the real Nix, produces structured-attrs files as Nix hands them to a
// builder, writes reference caches with `nix copy`, and runs scripts on a
// "fresh host" (an empty /nix in a private mount namespace).
//
// Every build passes --option sandbox true, which is what real users have:
// the builder then sees only its own closure.
package nixtest

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv names the variable that turns Require's skip into a failure,
// so CI cannot pass by skipping every end-to-end test.
const RequireEnv = "MKBINARYCACHE_REQUIRE_NIX"

// Require skips the test when nix-build is not on PATH or we are not root;
// when MKBINARYCACHE_REQUIRE_NIX=1 it fails instead (t.Fatal) with the reason.
func Require(t testing.TB) {
	t.Helper()
	reason := ""
	if _, err := exec.LookPath("nix-build"); err != nil {
		reason = "nix-build not found on PATH"
	} else if os.Geteuid() != 0 {
		// Single-user Nix, namespaces and tmpfs mounts all need root.
		reason = "not running as root"
	}
	if reason == "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("nix tests required (%s=1) but cannot run: %s", RequireEnv, reason)
	}
	t.Skipf("skipping nix test: %s", reason)
}

// RepoRoot returns the repo root (dir containing go.mod), found from the
// working dir upward.
func RepoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	root, err := findRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func findRoot(dir string) (string, error) {
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

// Run runs a command, failing the test with its combined output on error;
// returns stdout trimmed.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(nil, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// run returns stdout; its error carries the command line and the combined
// output, which is what one needs to see when a nix command fails.
func run(env []string, name string, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	combined := &lockedBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	cmd.Stderr = combined
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", cmdline(name, args), err, combined.Bytes())
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

func cmdline(name string, args []string) string {
	return strings.Join(append([]string{name}, args...), " ")
}

// SubstituterOpts returns the options that make Nix substitute from url
// alone, unsigned.
func SubstituterOpts(url string) []string {
	return []string{
		"--option", "substituters", url,
		"--option", "trusted-substituters", url,
		"--option", "require-sigs", "false",
	}
}

// scratch is a per-user directory for artifacts shared by test processes
// (go test runs packages in parallel, each with its own sync.Onces). A
// t.TempDir would vanish with the first test that asked for it.
func scratch() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mkbinarycache-nixtest-%d", os.Geteuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create scratch dir: %w", err)
	}
	return dir, nil
}

// publish moves the freshly made directory tmp to a name derived from its
// content, so that concurrent test processes share one copy and reruns
// reuse it. Entries with prefix older than a day are pruned: each change
// of the builder's code makes a new binary.
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

// checkStatic fails for a dynamically linked ELF file: it would not run
// inside the sandbox, which holds only the store paths of the closure.
func checkStatic(path string) error {
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

var binary struct {
	once sync.Once
	dir  string
	err  error
}

// BuildBinary builds CGO_ENABLED=0 go build -o DIR/bin/mkbinarycache
// ./builder/cmd/mkbinarycache once per test process and returns DIR (a dir
// usable with builtins.path, containing only bin/mkbinarycache).
func BuildBinary(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	binary.once.Do(func() {
		if binary.err = trackInputs(root); binary.err == nil {
			binary.dir, binary.err = goBuild(root, "./builder/cmd/mkbinarycache", "mkbinarycache")
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.dir
}

// trackInputs stats every file of the repo (but .git) from the test process.
// go test caches a package's result keyed on the files its test process
// opened or stat'ed, and knows nothing of what nix-build or go build read in
// a subprocess: without this, a change to the builder or to a .nix file
// would leave e2e tests passing from the cache.
func trackInputs(root string) error {
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			_, err = os.Stat(p)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("track test inputs: %w", err)
	}
	return nil
}

// goBuild builds the main package pkg of the module at root as a static
// binary DIR/bin/name and returns DIR.
func goBuild(root, pkg, name string) (string, error) {
	dir, err := scratch()
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
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	if err := checkStatic(bin); err != nil {
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

var busybox struct {
	once sync.Once
	dir  string
	err  error
}

// BusyboxDir returns a dir containing only bin/busybox (copy of the static
// busybox), created once per process.
func BusyboxDir(t testing.TB) string {
	t.Helper()
	busybox.once.Do(func() { busybox.dir, busybox.err = makeBusyboxDir() })
	if busybox.err != nil {
		t.Fatal(busybox.err)
	}
	return busybox.dir
}

func makeBusyboxDir() (string, error) {
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
	if err := checkStatic(src); err != nil {
		return "", fmt.Errorf("%w (install busybox-static)", err)
	}
	dir, err := scratch()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "tmp-")
	if err != nil {
		return "", fmt.Errorf("create busybox dir: %w", err)
	}
	if err := copyFile(src, filepath.Join(tmp, "bin", "busybox"), 0o755); err != nil {
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

func copyFile(src, dst string, perm os.FileMode) error {
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

// Fixture is the built testdata/fixture.nix.
type Fixture struct {
	// Store paths.
	Hello, Libgreet, Busybox string
	// Closure is the sorted store paths of hello's closure.
	Closure []string
	// LegacyGraph is a store path: the file that the legacy (non-structured)
	// exportReferencesGraph hands a builder for hello's closure.
	LegacyGraph string
}

var fixture struct {
	once sync.Once
	fx   *Fixture
	err  error
}

// BuildFixture nix-builds testdata/fixture.nix (with --option sandbox true,
// --no-out-link) once per process and returns the store paths.
func BuildFixture(t testing.TB) *Fixture {
	t.Helper()
	Require(t)
	root := RepoRoot(t)
	bb := BusyboxDir(t)
	fixture.once.Do(func() {
		if fixture.err = trackInputs(root); fixture.err == nil {
			fixture.fx, fixture.err = buildFixture(root, bb)
		}
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	fx := *fixture.fx
	fx.Closure = append([]string(nil), fx.Closure...) // callers may sort or edit theirs
	return &fx
}

func buildFixture(root, bb string) (*Fixture, error) {
	attrs := []string{"hello", "libgreet", "legacyGraph"}
	args := []string{filepath.Join(root, "testdata", "fixture.nix"), "--argstr", "busybox", bb,
		"--option", "sandbox", "true", "--no-out-link"}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := run(nil, "nix-build", args...)
	if err != nil {
		return nil, fmt.Errorf("build fixture: %w", err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(attrs) {
		return nil, fmt.Errorf("build fixture: want %d store paths, nix-build printed %q", len(attrs), out)
	}
	fx := &Fixture{Hello: paths[0], Libgreet: paths[1], LegacyGraph: paths[2]}
	out, err = run(nil, "nix-store", "--query", "--requisites", fx.Hello)
	if err != nil {
		return nil, fmt.Errorf("query fixture closure: %w", err)
	}
	fx.Closure = strings.Fields(string(out))
	sort.Strings(fx.Closure)
	for _, p := range fx.Closure {
		if strings.HasSuffix(p, "-busybox") {
			fx.Busybox = p
		}
	}
	if fx.Busybox == "" || len(fx.Closure) != 3 {
		return nil, fmt.Errorf("fixture: hello's closure should be hello, libgreet, busybox; got %q", fx.Closure)
	}
	return fx, nil
}

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
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

// Attrs returns the path of a structured-attrs JSON file (.attrs.json)
// produced by a real derivation with __structuredAttrs = true and
// exportReferencesGraph.closure = roots, built with --option sandbox true.
// Extra attributes (key -> Nix expression string) are added to the
// derivation and override the defaults, so callers can check e.g.
// compression = "\"xz\"". The returned file is a copy in t.TempDir().
func Attrs(t testing.TB, extra map[string]string, roots ...string) string {
	t.Helper()
	Require(t)
	bb := BusyboxDir(t)
	dir := t.TempDir()
	expr := attrsExpr(bb, extra, roots)
	exprFile := filepath.Join(dir, "attrs.nix")
	if err := os.WriteFile(exprFile, []byte(expr), 0o644); err != nil {
		t.Fatalf("write attrs expression: %v", err)
	}
	out := Run(t, "nix-build", exprFile, "--option", "sandbox", "true", "--no-out-link")
	dst := filepath.Join(dir, "attrs.json")
	if err := copyFile(out, dst, 0o644); err != nil {
		t.Fatalf("copy attrs file: %v", err)
	}
	return dst
}

func attrsExpr(bb string, extra map[string]string, roots []string) string {
	var rootList strings.Builder
	for _, r := range roots {
		// builtins.storePath gives the literal path the context that Nix
		// requires of exportReferencesGraph (it must be an input).
		fmt.Fprintf(&rootList, " (builtins.storePath %s)", nixString(r))
	}
	attrs := map[string]string{
		"name":                  `"attrs"`,
		"system":                "builtins.currentSystem",
		"builder":               `"${bb}/bin/busybox"`,
		"args":                  `[ "sh" "-c" ("B=${bb}/bin/busybox\n" + ` + nixString(attrsScript) + `) ]`,
		"__structuredAttrs":     "true",
		"exportReferencesGraph": "{ closure = [" + rootList.String() + " ]; }",
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
	fmt.Fprintf(&b, "let bb = builtins.path { path = %s; name = \"busybox\"; }; in\nderivation {\n", nixString(bb))
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s = %s;\n", nixString(k), attrs[k])
	}
	b.WriteString("}\n")
	return b.String()
}

// NixCopy writes the reference cache with `nix copy --to
// file://DIR?compression=C` of paths (their closure) and returns DIR (a new
// temp dir).
func NixCopy(t testing.TB, compression string, paths ...string) string {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	args := []string{"--extra-experimental-features", "nix-command", "copy",
		"--to", "file://" + dir + "?compression=" + compression}
	Run(t, "nix", append(args, paths...)...)
	return dir
}

// DumpNAR returns the bytes of `nix-store --dump path`.
func DumpNAR(t testing.TB, path string) []byte {
	t.Helper()
	Require(t)
	out, err := run(nil, "nix-store", "--dump", path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// freshStoreWrapper gives the script an empty /nix: a tmpfs mounted in a
// private mount namespace, so the host's store and database stay untouched
// and nothing leaks out when the namespace goes away.
const freshStoreWrapper = `set -e
mount -t tmpfs tmpfs /nix
mkdir -p /nix/store /nix/var/nix
exec sh -c "$1"`

// FreshStore runs the shell script (sh -c) in a private mount namespace with
// an empty tmpfs mounted on /nix, i.e. a fresh host with its own store and
// database (DESIGN.md §3), returning combined output and the error. The
// environment is inherited, less NIX_CONFIG (and NIX_REMOTE: a daemon's
// socket would be hidden by the tmpfs anyway).
func FreshStore(t testing.TB, script string) (string, error) {
	t.Helper()
	Require(t)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-c", freshStoreWrapper, "sh", script)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NIX_CONFIG=") || strings.HasPrefix(kv, "NIX_REMOTE=") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return string(out), fmt.Errorf("fresh store: run unshare: %w", err)
		}
		return string(out), fmt.Errorf("fresh store script: %w", err)
	}
	return string(out), nil
}
