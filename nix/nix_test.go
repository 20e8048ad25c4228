// Package nix_test checks the Nix side of mkbinarycache with real Nix: the
// mkBinaryCache function built in the sandbox, substituted from by a fresh
// store, reproducible, the same with every Nix version of the matrix, with
// clear evaluation errors; every .nix file parses; package.nix's vendorHash
// is current.
package nix_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// expr is a Nix expression of mkBinaryCache over the fixture's hello, with
// the builder imported from a fresh go build.
func expr(t *testing.T, args string) string {
	root := nixtest.RepoRoot(t)
	return `let
  fx = import ` + root + `/testdata/fixture.nix { busybox = ` + nixtest.BusyboxDir(t) + `; };
  lib = import ` + root + `/nix { builder = builtins.path { path = ` + nixtest.BuildBinary(t) + `; name = "mkbinarycache"; }; };
in lib.mkBinaryCache ({ rootPaths = [ fx.hello ]; } // ` + args + `)`
}

func nixBuild(t *testing.T, e string, extra ...string) (string, error) {
	args := append([]string{"--no-out-link", "--option", "sandbox", "true", "-E", e}, extra...)
	out, err := exec.Command("nix-build", args...).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return string(out), err
	}
	return lines[len(lines)-1], nil
}

func TestMkBinaryCache(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	drv := nixtest.Run(t, "nix-store", "--query", "--deriver", fx.Hello)
	for _, c := range []string{"none", "xz", "bzip2", "zstd"} {
		t.Run(c, func(t *testing.T) {
			e := expr(t, `{ compression = "`+c+`"; priority = 30; }`)
			cache, err := nixBuild(t, e)
			if err != nil {
				t.Fatalf("nix-build: %v\n%s", err, cache)
			}
			for _, d := range []string{"nar", "realisations", "debuginfo", "log", "build-trace-v2"} {
				if fi, err := os.Stat(filepath.Join(cache, d)); err != nil || !fi.IsDir() {
					t.Errorf("%s: no directory %s", cache, d)
				}
			}
			info, _ := os.ReadFile(filepath.Join(cache, "nix-cache-info"))
			if string(info) != "StoreDir: /nix/store\nPriority: 30\n" {
				t.Errorf("nix-cache-info: %q", info)
			}

			// Nix itself reads the closure back from the cache.
			js := nixtest.Run(t, "nix", "path-info", "--store", "file://"+cache, "--json", "--recursive", fx.Hello)
			var infos []struct {
				Path    string `json:"path"`
				Deriver string `json:"deriver"`
			}
			if err := json.Unmarshal([]byte(js), &infos); err != nil {
				t.Fatalf("nix path-info: %v\n%s", err, js)
			}
			var got []string
			for _, i := range infos {
				got = append(got, i.Path)
				if i.Path == fx.Hello && i.Deriver != drv {
					t.Errorf("hello's deriver in the cache: %q, want %q", i.Deriver, drv)
				}
			}
			sort.Strings(got)
			if diff := cmp.Diff(fx.Closure, got); diff != "" {
				t.Errorf("closure in the cache (-want +got):\n%s", diff)
			}

			// A fresh host builds hello by substitution only. Its empty /nix
			// hides the host's store: the cache travels as files, as between
			// two machines.
			copied := filepath.Join(t.TempDir(), "cache")
			nixtest.Run(t, "cp", "-r", cache, copied)
			url := "file://" + copied
			script := "nix-build " + nixtest.RepoRoot(t) + "/testdata/fixture.nix --argstr busybox " + nixtest.BusyboxDir(t) +
				" -A hello --no-out-link --option max-jobs 0 " + strings.Join(nixtest.SubstituterOpts(url), " ") +
				" && " + fx.Hello + "/bin/hello"
			out, err := nixtest.FreshStore(t, script)
			if err != nil {
				t.Fatalf("fresh store: %v\n%s", err, out)
			}
			for _, want := range []string{"copying path '" + fx.Hello + "' from '" + url + "'", "Hello from libgreet!"} {
				if !strings.Contains(out, want) {
					t.Errorf("fresh store output lacks %q:\n%s", want, out)
				}
			}

			// Reproducible: building again gives the same bytes.
			if out, err := nixBuild(t, e, "--check"); err != nil {
				t.Errorf("nix-build --check: %v\n%s", err, out)
			}
		})
	}
}

// Each Nix version of the matrix builds mkBinaryCache in its own sandbox,
// on a fresh store of its own (fixture and builder imported there), to the
// same bytes as the host's Nix; and a fresh host of each version
// substitutes hello from the cache built by each.
func TestMkBinaryCacheVersions(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	e := expr(t, `{ compression = "zstd"; }`)
	hostOut, err := nixBuild(t, e)
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, hostOut)
	}
	hostHash := nixtest.Run(t, "nix-hash", "--type", "sha256", "--base32", hostOut)
	versions := nixtest.Versions(t)
	for _, b := range versions {
		t.Run("nix-"+b.Name, func(t *testing.T) {
			t.Parallel()
			b.Require(t)
			// The cache travels as files, as between two machines.
			cache := filepath.Join(t.TempDir(), "cache")
			if b.Host() {
				nixtest.Run(t, "cp", "-r", hostOut, cache)
			} else {
				exprFile := filepath.Join(t.TempDir(), "cache.nix")
				if err := os.WriteFile(exprFile, []byte(e), 0o644); err != nil {
					t.Fatal(err)
				}
				script := nixtest.FixtureScript(t) + " && out=$(nix-build --no-out-link --option sandbox true " + nixtest.ShellQuote(exprFile) +
					") && echo \"built $out\" && cp -r \"$out\" " + nixtest.ShellQuote(cache)
				out, err := b.FreshStore(t, script)
				if err != nil {
					t.Fatalf("build mkBinaryCache with %s: %v\n%s", b.Full, err, out)
				}
				if !strings.Contains(out, "built "+hostOut+"\n") {
					t.Errorf("%s built another output path than the host's %s:\n%s", b.Full, hostOut, out)
				}
				if got := nixtest.Run(t, "nix-hash", "--type", "sha256", "--base32", cache); got != hostHash {
					t.Errorf("the cache %s built differs from the host's: NAR hash %s, host's %s", b.Full, got, hostHash)
				}
			}
			url := "file://" + cache
			for _, s := range versions {
				t.Run("substituted-by-nix-"+s.Name, func(t *testing.T) {
					s.Require(t)
					script := "nix-build " + nixtest.RepoRoot(t) + "/testdata/fixture.nix --argstr busybox " + nixtest.BusyboxDir(t) +
						" -A hello --no-out-link --option max-jobs 0 " + strings.Join(nixtest.SubstituterOpts(url), " ") +
						" && " + fx.Hello + "/bin/hello"
					out, err := s.FreshStore(t, script)
					if err != nil {
						t.Fatalf("fresh %s host: %v\n%s", s.Full, err, out)
					}
					for _, want := range []string{"copying path '" + fx.Hello + "' from '" + url + "'", "Hello from libgreet!"} {
						if !strings.Contains(out, want) {
							t.Errorf("fresh %s host's output lacks %q:\n%s", s.Full, want, out)
						}
					}
				})
			}
		})
	}
}

func TestEvaluationErrors(t *testing.T) {
	nixtest.Require(t)
	for _, tc := range []struct{ args, want string }{
		{`{ compression = "gzip"; }`, "`compression` must be one of \"none\", \"xz\", \"bzip2\", \"zstd\", got the string \"gzip\""},
		{`{ rootPaths = null; }`, "the argument `rootPaths` is required"},
		{`{ compression = "none"; compressionLevel = 3; }`, "`compressionLevel` makes no sense with compression = \"none\""},
		{`{ compressionLevel = 30; }`, "`compressionLevel` for zstd must be from 1 to 22, got 30"},
		{`{ compression = "xz"; xzProgram = 3; }`, "`xzProgram` must be null or the path of an xz binary"},
	} {
		out, err := exec.Command("nix-instantiate", "-E", expr(t, tc.args)).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "mkBinaryCache: "+tc.want) {
			t.Errorf("%s: error %v, output:\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}

// Every .nix file parses, including those that need nixpkgs to evaluate.
func TestNixFilesParse(t *testing.T) {
	nixtest.Require(t)
	root := nixtest.RepoRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if err == nil && strings.HasSuffix(p, ".nix") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("found only %d .nix files: %v", len(files), files)
	}
	for _, f := range files {
		if out, err := exec.Command("nix-instantiate", "--parse", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// package.nix's vendorHash must match what buildGoModule will compute from
// the same sources, or the package fails to build for every user.
func TestVendorHash(t *testing.T) {
	nixtest.Require(t)
	if testing.Short() {
		t.Skip("runs go mod vendor")
	}
	root := nixtest.RepoRoot(t)
	pkg, err := os.ReadFile(filepath.Join(root, "nix", "package.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`vendorHash = "([^"]+)"`).FindSubmatch(pkg)
	if m == nil {
		t.Fatal("package.nix has no vendorHash")
	}
	// The same source set as package.nix's fileset.
	dir := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "builder", "internal", "testdata"} {
		nixtest.Run(t, "cp", "-r", filepath.Join(root, p), dir)
	}
	cmd := exec.Command("go", "mod", "vendor")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	got := nixtest.Run(t, "nix", "hash", "path", "--type", "sha256", filepath.Join(dir, "vendor"))
	if got != string(m[1]) {
		t.Errorf("nix/package.nix: vendorHash = %q, but the vendor directory hashes to %q: update it", m[1], got)
	}
}
