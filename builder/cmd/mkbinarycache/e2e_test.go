package main_test

// End-to-end tests of the built binary against real Nix: what it writes is
// compared with `nix copy --to file://` and `nix-store --dump`, and a fresh
// store substitutes from it.

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// agreed keeps the fields that must agree between two caches of the same
// closure, whatever wrote them.
type agreed struct {
	NarHash    string
	NarSize    uint64
	References []string
	CA         string
}

func essence(m map[string]*narinfo.NarInfo) map[string]agreed {
	out := map[string]agreed{}
	for p, ni := range m {
		refs := append([]string(nil), ni.References...)
		sort.Strings(refs)
		out[p] = agreed{ni.NarHash.Format(nixhash.NixBase32, true), ni.NarSize, refs, ni.CA}
	}
	return out
}

func TestCacheMatchesNix(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	attrs := nixtest.Attrs(t, nil, fx.Hello)
	for _, m := range compress.Methods {
		t.Run(string(m), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			log := mkbinarycache(t, "--out", dir, "--attrs", attrs, "--compression", string(m))
			for _, p := range fx.Closure {
				if !strings.Contains(log, p+": NAR ") {
					t.Errorf("log has no line for %s:\n%s", p, log)
				}
			}
			if !strings.Contains(log, "3 paths (0 already present)") {
				t.Errorf("log has no summary:\n%s", log)
			}

			ours := testkit.NarInfos(t, dir)
			ref := testkit.NarInfos(t, nixtest.NixCopy(t, string(m), fx.Hello))
			if diff := cmp.Diff(essence(ref), essence(ours)); diff != "" {
				t.Errorf("narinfos differ from nix copy's (-nix +ours):\n%s", diff)
			}
			for p, ni := range ours {
				testkit.CheckNAR(t, dir, ni, m, nixtest.NixStoreDump(t, p))
			}
			if out := mkbinarycache(t, "verify", dir); !strings.Contains(out, "3 narinfos") || !strings.Contains(out, "no problems") {
				t.Errorf("verify: %s", out)
			}

			// A fresh host substitutes the whole closure; max-jobs 0 makes
			// building impossible, so success means substitution.
			url := "file://" + dir
			script := "nix-store -r " + fx.Hello + " --option max-jobs 0 " + strings.Join(nixtest.SubstituterOpts(url), " ") +
				" && nix-store --verify-path " + strings.Join(fx.Closure, " ") + " && " + fx.Hello + "/bin/hello"
			out, err := nixtest.FreshStore(t, script)
			if err != nil {
				t.Fatalf("substitute: %v\n%s", err, out)
			}
			for _, want := range []string{"copying path '" + fx.Libgreet + "' from '" + url + "'", "Hello from libgreet!"} {
				if !strings.Contains(out, want) {
					t.Errorf("substitution output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// withDeriver is agreed plus the Deriver line.
type withDeriver struct {
	Essence agreed
	Deriver string
}

func essenceWithDeriver(m map[string]*narinfo.NarInfo) map[string]withDeriver {
	out := map[string]withDeriver{}
	for p, c := range essence(m) {
		out[p] = withDeriver{c, m[p].Deriver}
	}
	return out
}

// Each Nix version of the matrix, on a fresh store of its own where it
// built the fixture, writes the reference with its own `nix copy`; the
// binary, given hello's store path there (so reading that version's
// `nix path-info --json`), must write the same NarHash, NarSize,
// References, CA and Deriver, and so must it on the host.
func TestNixCopyVersions(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	hostDir := filepath.Join(t.TempDir(), "host")
	// The fields compared do not depend on the compression: two suffice
	// (TestCacheMatchesNix covers every compression with the host's Nix;
	// xz, by far the slowest for nix copy, is left out).
	methods := []string{string(compress.None), string(compress.Zstd)}
	for _, m := range methods {
		mkbinarycache(t, "--out", filepath.Join(hostDir, m), "--quiet", "--compression", m, fx.Hello)
	}
	for _, v := range nixtest.Versions(t) {
		t.Run("nix-"+v.Name, func(t *testing.T) {
			t.Parallel()
			v.Require(t)
			dir := t.TempDir()
			script := nixtest.FixtureScript(t) + " && for c in " + strings.Join(methods, " ") + "; do " +
				"nix --extra-experimental-features nix-command copy --to \"file://" + dir + "/nix-copy/$c?compression=$c\" \"$hello\" && " +
				nixtest.ShellQuote(binary(t)) + " --out " + dir + "/ours/$c --quiet --compression $c \"$hello\" || exit 1; done"
			out, err := v.FreshStore(t, script)
			if err != nil {
				t.Fatalf("%s: %v\n%s", v.Full, err, out)
			}
			for _, c := range methods {
				ref := essenceWithDeriver(testkit.NarInfos(t, filepath.Join(dir, "nix-copy", c)))
				if len(ref) != len(fx.Closure) {
					t.Fatalf("%s: nix copy wrote %d narinfos, want %d", c, len(ref), len(fx.Closure))
				}
				for name, ours := range map[string]string{"here": filepath.Join(dir, "ours", c), "host": filepath.Join(hostDir, c)} {
					if diff := cmp.Diff(ref, essenceWithDeriver(testkit.NarInfos(t, ours))); diff != "" {
						t.Errorf("%s, ours (%s) differs from %s's nix copy (-nix +ours):\n%s", c, name, v.Full, diff)
					}
				}
			}
		})
	}
}

// Every way of naming the closure yields the same cache, CA lines included
// (the line formats have none: they are recovered); only the path-info form
// knows derivers.
func TestInputForms(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	base := t.TempDir()
	cache := func(name string, drop []string, args ...string) map[string]string {
		dir := filepath.Join(base, name)
		mkbinarycache(t, append([]string{"--out", dir, "--quiet"}, args...)...)
		files := map[string]string{}
		err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			var kept []string
			for _, line := range strings.SplitAfter(string(data), "\n") {
				keep := true
				for _, key := range drop {
					keep = keep && !strings.HasPrefix(line, key+": ")
				}
				if keep {
					kept = append(kept, line)
				}
			}
			files[rel] = strings.Join(kept, "")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	attrs := nixtest.Attrs(t, nil, fx.Hello)
	noDeriver := []string{"Deriver"}
	want := cache("attrs", noDeriver, "--attrs", attrs)

	// nix-store --dump-db writes the registration format closureInfo has.
	ci := filepath.Join(base, "closure-info")
	if err := os.MkdirAll(ci, 0o755); err != nil {
		t.Fatal(err)
	}
	reg := nixtest.Run(t, "nix-store", append([]string{"--dump-db"}, fx.Closure...)...)
	if err := os.WriteFile(filepath.Join(ci, "registration"), []byte(reg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		want map[string]string
		drop []string
		args []string
	}{
		{"graph", want, noDeriver, []string{"--graph", fx.LegacyGraph}},
		{"closure-info", want, noDeriver, []string{"--closure-info", ci}},
		{"paths", want, noDeriver, []string{fx.Hello}},
	} {
		name := tc.name
		if diff := cmp.Diff(tc.want, cache(name+"-out", tc.drop, tc.args...)); diff != "" {
			t.Errorf("--%s: cache differs from --attrs (-attrs +%s):\n%s", name, name, diff)
		}
	}
	drv := nixtest.Run(t, "nix-store", "--query", "--deriver", fx.Hello)
	ni := testkit.NarInfos(t, filepath.Join(base, "paths-out"))[fx.Hello]
	if ni == nil || ni.Deriver != filepath.Base(drv) {
		t.Errorf("store-path form: Deriver %+v, want %s", ni, filepath.Base(drv))
	}
}

func TestUsage(t *testing.T) {
	nixtest.Require(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "mkbinarycache "},
		{[]string{"--help"}, 0, "Examples:"},
		{[]string{"--out", "/tmp/x"}, 2, "give exactly one of --attrs, --closure-info, --graph or store paths"},
		{[]string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--out", "/tmp/x", "--compression", "gzip", "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a"}, 1, "path-info --json --recursive -- /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a"},
	} {
		code, stdout, stderr := runBinary(t, nil, tc.args...)
		if out := stdout + stderr; code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("mkbinarycache %s: exit %d, output %q; want exit %d and %q", strings.Join(tc.args, " "), code, out, tc.code, tc.want)
		}
	}
}

// --build-closure adds the derivations: a fresh store can then realise
// hello's .drv from the cache alone, and knows how hello was built.
func TestBuildClosure(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	drv := nixtest.Run(t, "nix-store", "--query", "--deriver", fx.Hello)
	dir := filepath.Join(t.TempDir(), "cache")
	mkbinarycache(t, "--out", dir, "--quiet", "--build-closure", fx.Hello)
	want := nixtest.Run(t, "nix-store", "--query", "--requisites", "--include-outputs", drv)
	var got []string
	for p := range testkit.NarInfos(t, dir) {
		got = append(got, p)
	}
	wantList := strings.Fields(want)
	sort.Strings(wantList)
	sort.Strings(got)
	if diff := cmp.Diff(wantList, got); diff != "" {
		t.Errorf("cache paths (-want +got):\n%s", diff)
	}
	url := "file://" + dir
	out, err := nixtest.FreshStore(t, "nix-store -r "+drv+" --option max-jobs 0 "+strings.Join(nixtest.SubstituterOpts(url), " ")+
		" && nix-store --query --deriver "+fx.Hello+" && "+fx.Hello+"/bin/hello")
	if err != nil {
		t.Fatalf("fresh store: %v\n%s", err, out)
	}
	for _, w := range []string{"copying path '" + drv + "' from '" + url + "'", drv, "Hello from libgreet!"} {
		if !strings.Contains(out, w) {
			t.Errorf("fresh store output lacks %q:\n%s", w, out)
		}
	}
	if code, stdout, stderr := runBinary(t, nil, "--out", dir, "--build-closure", fx.Busybox); code == 0 || !strings.Contains(stdout+stderr, fx.Busybox+" has no known deriver") {
		t.Errorf("--build-closure of a path without deriver: exit %d, %s%s", code, stdout, stderr)
	}
}
