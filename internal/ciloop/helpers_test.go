package ciloop

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// binary is the mkbinarycache binary, built once.
func binary(t testing.TB) string {
	t.Helper()
	return filepath.Join(nixtest.BuildBinary(t), "bin", "mkbinarycache")
}

// ciNix is the CI loop's Nix expression.
func ciNix(t testing.TB) string {
	return filepath.Join(nixtest.RepoRoot(t), "internal", "ciloop", "testdata", "ci.nix")
}

// mbc runs the binary and returns its combined output and error.
func mbc(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustMBC runs the binary and fails the test unless it exits 0.
func mustMBC(t testing.TB, args ...string) string {
	t.Helper()
	out, err := mbc(t, nil, args...)
	if err != nil {
		t.Fatalf("mkbinarycache %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// exitCode is the exit status in err (0 for nil).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}

var (
	buildingRE = regexp.MustCompile(`building '(/[^']+\.drv)'`)
	copyingRE  = regexp.MustCompile(`copying path '(/[^']+)' from '([^']+)'`)
)

// names returns the sorted name parts of the store paths (without the
// hash and, for derivations, the .drv).
func names(paths []string) []string {
	var out []string
	for _, p := range paths {
		base := filepath.Base(p)
		if i := strings.IndexByte(base, '-'); i >= 0 {
			base = base[i+1:]
		}
		out = append(out, strings.TrimSuffix(base, ".drv"))
	}
	sort.Strings(out)
	return out
}

// matches returns the first group of every match of re in s.
func matches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// narinfoNames returns the names of the store paths the cache has.
func narinfoNames(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if p, ok := strings.CutPrefix(l, "StorePath: "); ok {
				paths = append(paths, p)
			}
		}
	}
	return names(paths)
}
