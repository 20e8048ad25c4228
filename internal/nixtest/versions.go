package nixtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// ExtraRootfsEnv names an opt-in variable: a further root file system whose
// Nix joins the matrix after the suites' (say a copy of sid's with a newer
// Nix built into /opt/NAME). Tests and setup never need it.
const ExtraRootfsEnv = "MKBINARYCACHE_EXTRA_ROOTFS"

// RootfsEnv names the variable that overrides RootfsDir.
const RootfsEnv = "MKBINARYCACHE_ROOTFS"

// RootfsDir is where scripts/setup.sh leaves the Debian root file systems
// with newer Nix, one directory per suite.
const RootfsDir = "/var/lib/mkbinarycache/rootfs"

// rootfsMarker is the file setup.sh writes last into a complete rootfs.
const rootfsMarker = ".mkbinarycache-rootfs"

// suites are the Debian suites of the matrix and the Nix version each is
// expected to have (the name of its subtests while it is missing).
var suites = []struct{ suite, expect string }{
	{"trixie", "2.26"},
	{"sid", "2.34"},
}

// Version is one Nix of the test matrix: the host's own, or a newer one
// installed in a Debian root file system and always run chrooted on a fresh
// store of its own (it would migrate the host's database).
type Version struct {
	// Name is major.minor, as `nix --version` prints it ("2.8", "2.26").
	Name string
	// Full is the output of `nix --version`, e.g. "nix (Nix) 2.26.3".
	Full string
	// Root is the root file system; "" for the host's Nix.
	Root string
	// Env is the environment of the commands run in Root: PATH first.
	Env []string
	// Extra: the opt-in root file system of ExtraRootfsEnv.
	Extra bool
	// missing says why this version cannot run here; "" if it can.
	missing string
}

// Host reports whether this is the host's own Nix.
func (v Version) Host() bool { return v.Root == "" }

// Require skips the test when this version is missing here (setup.sh has
// not prepared its root file system); when MKBINARYCACHE_REQUIRE_NIX=1 it
// fails instead, so CI cannot pass by skipping a version.
func (v Version) Require(t testing.TB) {
	t.Helper()
	Require(t)
	if v.missing == "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("Nix %s required (%s=1) but cannot run: %s (run scripts/setup.sh)", v.Name, RequireEnv, v.missing)
	}
	t.Skipf("skipping Nix %s: %s (run scripts/setup.sh)", v.Name, v.missing)
}

var versions struct {
	once sync.Once
	list []Version
	err  error
}

// Versions returns the Nix versions of the matrix, the host's first, then
// oldest to newest. A version that is missing here is still listed: its
// Require skips (or fails, under MKBINARYCACHE_REQUIRE_NIX=1), so the gap
// shows as a skipped subtest.
func Versions(t testing.TB) []Version {
	t.Helper()
	Require(t)
	versions.once.Do(func() { versions.list, versions.err = probeVersions() })
	if versions.err != nil {
		t.Fatal(versions.err)
	}
	return append([]Version(nil), versions.list...)
}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)(\.\S+)?`)

// versionName returns major.minor from `nix --version` output.
func versionName(full string) (string, error) {
	m := versionRE.FindStringSubmatch(full)
	if m == nil {
		return "", fmt.Errorf("no version number in %q", full)
	}
	return m[1] + "." + m[2], nil
}

func probeVersions() ([]Version, error) {
	out, err := Exec(nil, "nix", "--version")
	if err != nil {
		return nil, fmt.Errorf("host Nix version: %w", err)
	}
	host := Version{Full: strings.TrimSpace(string(out))}
	if host.Name, err = versionName(host.Full); err != nil {
		return nil, fmt.Errorf("host Nix version: %w", err)
	}
	list := []Version{host}
	roots := []Version{}
	for _, s := range suites {
		roots = append(roots, Version{Name: s.expect, Root: Rootfs(s.suite), Env: []string{"PATH=" + ChrootPath}})
	}
	if r := os.Getenv(ExtraRootfsEnv); r != "" {
		v, err := extraVersion(r)
		if err != nil {
			return nil, err
		}
		roots = append(roots, v)
	}
	for _, v := range roots {
		if _, err := os.Stat(filepath.Join(v.Root, rootfsMarker)); err != nil {
			v.missing = fmt.Sprintf("no complete root file system %s (%v)", v.Root, err)
			list = append(list, v)
			continue
		}
		// Nix needs /proc even for --version: run it as a fresh host does.
		out, err := Exec(nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", chrootWrapper, "sh", v.Root, v.shell("nix --version"))
		if err != nil {
			v.missing = err.Error()
			list = append(list, v)
			continue
		}
		v.Full = strings.TrimSpace(string(out))
		if v.Name, err = versionName(v.Full); err != nil {
			return nil, fmt.Errorf("%s: %w", v.Root, err)
		}
		list = append(list, v)
	}
	return list, nil
}

// extraVersion is the Nix of the root file system ExtraRootfsEnv names: one
// installed in ROOT/opt/NAME/bin if there is one (its compiled-in state and
// configuration directories are under its prefix: the variables point them
// at the root's), else the root's own.
func extraVersion(root string) (Version, error) {
	v := Version{Name: "extra", Root: root, Env: []string{"PATH=" + ChrootPath}, Extra: true}
	found, err := filepath.Glob(filepath.Join(root, "opt", "*", "bin", "nix"))
	if err != nil {
		return v, err
	}
	switch len(found) {
	case 0:
	case 1:
		bin := "/" + strings.TrimPrefix(filepath.Dir(found[0]), filepath.Clean(root)+"/")
		v.Env = []string{"PATH=" + bin + ":" + ChrootPath, "NIX_CONF_DIR=/etc/nix", "NIX_STATE_DIR=/nix/var/nix", "NIX_LOG_DIR=/nix/var/log/nix"}
	default:
		return v, fmt.Errorf("%s=%s: more than one Nix in opt/*/bin: %v", ExtraRootfsEnv, root, found)
	}
	return v, nil
}

// shell prefixes script with this version's environment (chrootWrapper
// starts from an empty one with ChrootPath).
func (v Version) shell(script string) string {
	if len(v.Env) == 0 {
		return script
	}
	return "export " + strings.Join(v.Env, " ") + "; " + script
}

// Rootfs is where the setup script puts the root file system of a Debian
// suite: under RootfsDir, or the directory RootfsEnv names.
func Rootfs(suite string) string {
	dir := RootfsDir
	if d := os.Getenv(RootfsEnv); d != "" {
		dir = d
	}
	return filepath.Join(dir, suite)
}

// ChrootPath is PATH inside the root file systems: the host's may name
// directories a root lacks or, worse, holding other programs.
const ChrootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// chrootWrapper makes the fresh host of a root file system ($1) and runs
// the script ($2) there: in the private mount namespace unshare made, a new
// tmpfs on ROOT/nix (mode 755: Nix 2.34 refuses a world-writable /nix) and
// on ROOT/root (so Nix's ~/.cache does not outlive the run), /proc, /dev and
// /sys, and each further argument bind-mounted at its own path; then chroot.
// Everything goes away with the namespace.
const chrootWrapper = `set -e
root=$1 script=$2
shift 2
mount -t tmpfs -o mode=0755 tmpfs "$root/nix"
mkdir -p "$root/nix/store" "$root/nix/var/nix"
mount -t tmpfs -o mode=0700 tmpfs "$root/root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
for d do
	mkdir -p "$root$d"
	mount --rbind "$d" "$root$d"
done
exec chroot "$root" /usr/bin/env -i PATH=` + ChrootPath + ` HOME=/root sh -c "$script"`

// FreshStore runs the shell script (sh -c) on a fresh host of this Nix
// version, with an empty store and database of its own, and returns the
// combined output and the error. For the host's Nix that is the package's
// FreshStore (binds are moot: every directory is visible); for a newer one,
// its root file system, chrooted, where the repository, the temp directory
// (t.TempDir, the scratch directory with the built binary and busybox) and
// binds are mounted at their own paths.
func (v Version) FreshStore(t testing.TB, script string, binds ...string) (string, error) {
	t.Helper()
	v.Require(t)
	if v.Host() {
		return FreshStore(t, script)
	}
	dirs := mountList(append([]string{RepoRoot(t), os.TempDir()}, binds...))
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", chrootWrapper, "sh", v.Root, v.shell(script)}, dirs...)
	out, err := proc.CombinedOutput(exec.Command("unshare", args...), proc.Timeout)
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return string(out), fmt.Errorf("fresh Nix %s host: run unshare: %w", v.Name, err)
		}
		return string(out), fmt.Errorf("fresh Nix %s host: script: %w", v.Name, err)
	}
	return string(out), nil
}

// mountList returns the absolute, cleaned dirs, parents first, without those
// inside another (a bind of the parent already shows them).
func mountList(dirs []string) []string {
	var clean []string
	for _, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		clean = append(clean, filepath.Clean(d))
	}
	sort.Strings(clean)
	var out []string
	for _, d := range clean {
		inside := false
		for _, p := range out {
			if d == p || strings.HasPrefix(d, p+"/") || p == "/" {
				inside = true
			}
		}
		if !inside {
			out = append(out, d)
		}
	}
	return out
}

// FixtureScript is a shell command that builds testdata/fixture.nix's hello
// (so its closure: hello, libgreet, busybox) with --option sandbox true in
// the store the script runs on, and fails unless hello gets the store path
// it has on the host (BuildFixture's): the fixture is input-addressed, so
// every Nix version must agree on it.
func FixtureScript(t testing.TB) string {
	t.Helper()
	fx := BuildFixture(t)
	return fmt.Sprintf(`hello=$(nix-build %s --argstr busybox %s -A hello --option sandbox true --no-out-link) && `+
		`{ [ "$hello" = %s ] || { echo "fixture: hello is $hello here, %s on the host"; false; }; }`,
		ShellQuote(filepath.Join(RepoRoot(t), "testdata", "fixture.nix")), ShellQuote(BusyboxDir(t)),
		ShellQuote(fx.Hello), fx.Hello)
}

// ShellQuote quotes each argument for sh and joins them with spaces.
func ShellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
