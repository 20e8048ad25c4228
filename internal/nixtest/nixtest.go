// Package nixtest is the harness of the tests against real Nix: it builds
// the mkbinarycache binary and the test closure (testdata/fixture.nix) with
// the real Nix, produces structured-attrs files as Nix hands them to a
// builder, writes reference caches with `nix copy`, and runs scripts on a
// "fresh host" (an empty /nix in a private mount namespace), with the
// host's Nix or, through Versions, with newer Nix versions from Debian root
// file systems.
//
// Every build passes --option sandbox true, which is what real users have:
// the builder then sees only its own closure.
package nixtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
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
	root, err := FindRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Run runs a command, failing the test with its combined output on error;
// returns stdout trimmed.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Exec(nil, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
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
			binary.dir, binary.err = GoBuild(root, "./builder/cmd/mkbinarycache", "mkbinarycache")
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

var busybox struct {
	once sync.Once
	dir  string
	err  error
}

// BusyboxDir returns a dir containing only bin/busybox (copy of the static
// busybox), created once per process.
func BusyboxDir(t testing.TB) string {
	t.Helper()
	busybox.once.Do(func() { busybox.dir, busybox.err = MakeBusyboxDir() })
	if busybox.err != nil {
		t.Fatal(busybox.err)
	}
	return busybox.dir
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
	out, err := Exec(nil, "nix-build", args...)
	if err != nil {
		return nil, fmt.Errorf("build fixture: %w", err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(attrs) {
		return nil, fmt.Errorf("build fixture: want %d store paths, nix-build printed %q", len(attrs), out)
	}
	fx := &Fixture{Hello: paths[0], Libgreet: paths[1], LegacyGraph: paths[2]}
	out, err = Exec(nil, "nix-store", "--query", "--requisites", fx.Hello)
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
	exprs := make([]string, len(roots))
	for i, r := range roots {
		exprs[i] = StorePathExpr(r)
	}
	expr := AttrsExpr(bb, extra, exprs)
	exprFile := filepath.Join(dir, "attrs.nix")
	if err := os.WriteFile(exprFile, []byte(expr), 0o644); err != nil {
		t.Fatalf("write attrs expression: %v", err)
	}
	out := Run(t, "nix-build", exprFile, "--option", "sandbox", "true", "--no-out-link")
	dst := filepath.Join(dir, "attrs.json")
	if err := CopyFile(out, dst, 0o644); err != nil {
		t.Fatalf("copy attrs file: %v", err)
	}
	return dst
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

// NixStoreDump returns the bytes of `nix-store --dump path`: Nix's NAR of
// path (ours is testkit.Nardump).
func NixStoreDump(t testing.TB, path string) []byte {
	t.Helper()
	Require(t)
	out, err := Exec(nil, "nix-store", "--dump", path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// freshStoreWrapper gives the script an empty /nix: a tmpfs mounted in a
// private mount namespace, so the host's store and database stay untouched
// and nothing leaks out when the namespace goes away.
const freshStoreWrapper = `set -e
mount -t tmpfs -o mode=0755 tmpfs /nix
mkdir -p /nix/store /nix/var/nix
exec sh -c "$1"`

// FreshStore runs the shell script (sh -c) in a private mount namespace with
// an empty tmpfs mounted on /nix, i.e. a fresh host with its own store and
// database, returning combined output and the error. The
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
	out, err := proc.CombinedOutput(cmd, proc.Timeout)
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return string(out), fmt.Errorf("fresh store: run unshare: %w", err)
		}
		return string(out), fmt.Errorf("fresh store script: %w", err)
	}
	return string(out), nil
}
