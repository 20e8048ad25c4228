package nixtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const greeting = "Hello from libgreet!"

// fakeTB records what a helper reports instead of ending the real test.
type fakeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// call runs fn on its own goroutine, since fakeTB stops it with Goexit.
func call(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestRequireWithoutNix(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireEnv, "")
	f := call(func(tb testing.TB) { Require(tb) })
	if !f.skipped || f.failed || !strings.Contains(f.msg, "nix-build not found") {
		t.Errorf("Require without nix-build: skipped=%v failed=%v msg=%q; want a skip naming nix-build", f.skipped, f.failed, f.msg)
	}
	t.Setenv(RequireEnv, "1")
	f = call(func(tb testing.TB) { Require(tb) })
	if !f.failed || f.skipped || !strings.Contains(f.msg, "nix-build not found") {
		t.Errorf("Require with %s=1: skipped=%v failed=%v msg=%q; want a failure naming nix-build", RequireEnv, f.skipped, f.failed, f.msg)
	}
}

func TestRun(t *testing.T) {
	if got := Run(t, "sh", "-c", "echo '  out  '; echo err >&2"); got != "out" {
		t.Errorf("Run stdout = %q, want %q", got, "out")
	}
	f := call(func(tb testing.TB) { Run(tb, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3") })
	if !f.failed || !strings.Contains(f.msg, "to-stdout") || !strings.Contains(f.msg, "to-stderr") {
		t.Errorf("failing Run: failed=%v msg=%q; want a failure with the combined output", f.failed, f.msg)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "testdata", "fixture.nix")); err != nil {
		t.Errorf("RepoRoot = %s, which lacks testdata/fixture.nix: %v", root, err)
	}
	if _, err := findRoot("/"); err == nil {
		t.Error("findRoot(/) found a go.mod")
	}
}

func TestSubstituterOpts(t *testing.T) {
	want := []string{"--option", "substituters", "file:///c", "--option", "trusted-substituters", "file:///c",
		"--option", "require-sigs", "false"}
	if diff := cmp.Diff(want, SubstituterOpts("file:///c")); diff != "" {
		t.Errorf("SubstituterOpts (-want +got):\n%s", diff)
	}
}

// listTree returns "path mode" for everything under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel != "." {
			got = append(got, fmt.Sprintf("%s %v", rel, info.Mode()))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return got
}

func TestBusyboxDir(t *testing.T) {
	dir := BusyboxDir(t)
	if dir2 := BusyboxDir(t); dir2 != dir {
		t.Errorf("second BusyboxDir = %s, want the same %s", dir2, dir)
	}
	want := []string{"bin " + (os.ModeDir | 0o755).String(), "bin/busybox -rwxr-xr-x"}
	if diff := cmp.Diff(want, listTree(t, dir)); diff != "" {
		t.Errorf("BusyboxDir content (-want +got):\n%s", diff)
	}
	if got := Run(t, filepath.Join(dir, "bin", "busybox"), "echo", "ok"); got != "ok" {
		t.Errorf("busybox echo ok = %q", got)
	}
}

// TestGoBuild checks the build step of BuildBinary on a throwaway module,
// so it does not depend on the state of the builder's code.
func TestGoBuild(t *testing.T) {
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":  "module example.com/tool\n\ngo 1.26\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"tool ok\") }\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := goBuild(mod, ".", "nixtest-tool")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bin " + (os.ModeDir | 0o755).String(), "bin/nixtest-tool -rwxr-xr-x"}
	if diff := cmp.Diff(want, listTree(t, dir)); diff != "" {
		t.Errorf("build dir content (-want +got):\n%s", diff)
	}
	if got := Run(t, filepath.Join(dir, "bin", "nixtest-tool")); got != "tool ok" {
		t.Errorf("built tool printed %q", got)
	}
	dir2, err := goBuild(mod, ".", "nixtest-tool")
	if err != nil {
		t.Fatal(err)
	}
	if dir2 != dir {
		t.Errorf("rebuilding the same code gave %s, want the same dir %s", dir2, dir)
	}
	if err := checkStatic("/bin/sh"); err == nil {
		t.Error("checkStatic(/bin/sh) accepted a dynamic binary")
	}
}

func TestBuildBinary(t *testing.T) {
	main := filepath.Join(RepoRoot(t), "builder", "cmd", "mkbinarycache")
	if gofiles, _ := filepath.Glob(filepath.Join(main, "*.go")); len(gofiles) == 0 {
		t.Skipf("no Go files in %s yet", main)
	}
	dir := BuildBinary(t)
	want := []string{"bin " + (os.ModeDir | 0o755).String(), "bin/mkbinarycache -rwxr-xr-x"}
	if diff := cmp.Diff(want, listTree(t, dir)); diff != "" {
		t.Errorf("BuildBinary dir content (-want +got):\n%s", diff)
	}
}

func TestNixString(t *testing.T) {
	Require(t)
	s := "a\\b \"q\" ${x} $y\nline\ttab ''"
	got := Run(t, "nix-instantiate", "--eval", "--json", "--expr", nixString(s))
	var back string
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("nix printed %q: %v", got, err)
	}
	if back != s {
		t.Errorf("nixString round trip: got %q, want %q", back, s)
	}
}

func TestFixture(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	want := []string{fx.Busybox, fx.Hello, fx.Libgreet}
	sort.Strings(want)
	if diff := cmp.Diff(want, fx.Closure); diff != "" {
		t.Errorf("Closure (-want +got):\n%s", diff)
	}
	for p, suffix := range map[string]string{fx.Hello: "-hello", fx.Libgreet: "-libgreet", fx.Busybox: "-busybox"} {
		if !strings.HasPrefix(p, "/nix/store/") || !strings.HasSuffix(p, suffix) {
			t.Errorf("store path %q, want /nix/store/…%s", p, suffix)
		}
	}
	if got := Run(t, fx.Hello+"/bin/hello"); got != greeting {
		t.Errorf("hello printed %q, want %q", got, greeting)
	}
	refs := func(p string) []string {
		r := strings.Fields(Run(t, "nix-store", "--query", "--references", p))
		sort.Strings(r)
		return r
	}
	if diff := cmp.Diff([]string{fx.Busybox, fx.Libgreet}, refs(fx.Hello)); diff != "" {
		t.Errorf("hello's references (-want +got):\n%s", diff)
	}
	// libgreet refers to itself (its script names its own path) and to busybox.
	if diff := cmp.Diff([]string{fx.Busybox, fx.Libgreet}, refs(fx.Libgreet)); diff != "" {
		t.Errorf("libgreet's references (-want +got):\n%s", diff)
	}

	// The edge cases that the fixture promises a NAR writer.
	lg := fx.Libgreet
	checks := []struct {
		path string
		mode os.FileMode // type and permission bits as Lstat reports them
		size int64       // -1: any
	}{
		{"share/greet/big.bin", 0o444, 3 << 20},
		{"share/greet/empty-file", 0o444, 0},
		{"share/empty-dir", os.ModeDir | 0o555, -1},
		{"share/greet/deep/deeper/deepest/file", 0o444, -1},
		{"share/greet/link-to-greeting", os.ModeSymlink | 0o777, -1},
		{"share/greet/dangling", os.ModeSymlink | 0o777, -1},
		{"bin/greet", 0o555, -1},
	}
	for _, c := range checks {
		info, err := os.Lstat(filepath.Join(lg, c.path))
		if err != nil {
			t.Error(err)
			continue
		}
		if info.Mode() != c.mode || (c.size >= 0 && info.Size() != c.size) {
			t.Errorf("%s: mode %v size %d, want mode %v size %d", c.path, info.Mode(), info.Size(), c.mode, c.size)
		}
	}
	if entries, err := os.ReadDir(filepath.Join(lg, "share/empty-dir")); err != nil || len(entries) != 0 {
		t.Errorf("share/empty-dir: %d entries, err %v; want empty", len(entries), err)
	}
	if _, err := os.Stat(filepath.Join(lg, "share/greet/dangling")); !os.IsNotExist(err) {
		t.Errorf("share/greet/dangling should dangle; stat gave %v", err)
	}

	// Legacy exportReferencesGraph: "path\nderiver\nnrefs\nrefs..." per path.
	legacy, err := os.ReadFile(fx.LegacyGraph)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	lines := strings.Split(strings.TrimSuffix(string(legacy), "\n"), "\n")
	for i := 0; i+2 < len(lines); {
		got = append(got, lines[i])
		var n int
		if _, err := fmt.Sscan(lines[i+2], &n); err != nil {
			t.Fatalf("legacy graph %q: %v", legacy, err)
		}
		i += 3 + n
	}
	sort.Strings(got)
	if diff := cmp.Diff(fx.Closure, got); diff != "" {
		t.Errorf("legacy graph paths (-want +got):\n%s", diff)
	}
}

// closureEntry is one element of the structured attrs' exportReferencesGraph
// list (and of `nix path-info --json -S`).
type closureEntry struct {
	Path        string   `json:"path"`
	NarHash     string   `json:"narHash"`
	NarSize     int64    `json:"narSize"`
	References  []string `json:"references"`
	ClosureSize int64    `json:"closureSize"`
	CA          string   `json:"ca,omitempty"`
}

func TestAttrs(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)

	// The reference: what Nix itself says about the closure.
	var want []closureEntry
	info := Run(t, "nix", "--extra-experimental-features", "nix-command", "path-info", "--json", "--recursive",
		"--closure-size", fx.Hello)
	if err := json.Unmarshal([]byte(info), &want); err != nil {
		t.Fatalf("parse nix path-info: %v\n%s", err, info)
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Path < want[j].Path })
	// path-info prints SRI hashes; .attrs.json has Nix 2.8's "sha256:<nix32>".
	for i := range want {
		want[i].NarHash = Run(t, "nix-store", "--query", "--hash", want[i].Path)
	}
	only := func(paths ...string) []closureEntry {
		var es []closureEntry
		for _, e := range want {
			for _, p := range paths {
				if e.Path == p {
					es = append(es, e)
				}
			}
		}
		return es
	}

	tests := []struct {
		name  string
		extra map[string]string
		roots []string
		want  []closureEntry
		attrs map[string]any // top-level attributes expected in the file
	}{
		{"hello", nil, []string{fx.Hello}, want, map[string]any{"name": "attrs"}},
		{"extra", map[string]string{"compression": `"xz"`, "n": "3", "name": `"custom"`, "list": `[ "a" 1 ]`},
			[]string{fx.Hello}, want,
			map[string]any{"compression": "xz", "n": 3.0, "name": "custom", "list": []any{"a", 1.0}}},
		{"libgreet and busybox", nil, []string{fx.Libgreet, fx.Busybox}, only(fx.Libgreet, fx.Busybox), nil},
		{"no roots", nil, nil, []closureEntry{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := Attrs(t, tc.extra, tc.roots...)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Closure []closureEntry    `json:"closure"`
				Outputs map[string]string `json:"outputs"`
			}
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatalf("parse %s: %v\n%s", file, err, data)
			}
			if diff := cmp.Diff(tc.want, got.Closure); diff != "" {
				t.Errorf("closure (-want nix path-info +got .attrs.json):\n%s", diff)
			}
			if out := got.Outputs["out"]; !strings.HasPrefix(out, "/nix/store/") {
				t.Errorf("outputs.out = %q, want a store path", out)
			}
			var top map[string]any
			if err := json.Unmarshal(data, &top); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.attrs {
				if diff := cmp.Diff(v, top[k]); diff != "" {
					t.Errorf("attribute %s (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}

// TestSandbox checks that builds here are really sandboxed: the builder
// sees only its inputs' closure in /nix/store.
func TestSandbox(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	dir := t.TempDir()
	expr := fmt.Sprintf(`let bb = builtins.path { path = %s; name = "busybox"; }; in
derivation {
  name = "store-listing";
  system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "ls /nix/store > listing && cp listing $out" ];
  PATH = "${bb}/bin";
  hello = builtins.storePath %s;
}`, nixString(BusyboxDir(t)), nixString(fx.Hello))
	file := filepath.Join(dir, "listing.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out := Run(t, "nix-build", file, "--option", "sandbox", "true", "--no-out-link")
	listing, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range fx.Closure {
		want = append(want, filepath.Base(p))
	}
	got := strings.Fields(string(listing))
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/nix/store in the sandbox (-want +got):\n%s", diff)
	}
}

// narinfo parses a narinfo file into its fields.
func narinfo(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: bad line %q", file, line)
		}
		fields[k] = v
	}
	return fields
}

func TestNixCopy(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	for _, tc := range []struct{ compression, ext string }{{"zstd", ".nar.zst"}, {"xz", ".nar.xz"}, {"none", ".nar"}} {
		t.Run(tc.compression, func(t *testing.T) {
			t.Parallel()
			cache := NixCopy(t, tc.compression, fx.Hello)
			if _, err := os.Stat(filepath.Join(cache, "nix-cache-info")); err != nil {
				t.Error(err)
			}
			for _, p := range fx.Closure {
				hash, _, _ := strings.Cut(filepath.Base(p), "-")
				ni := narinfo(t, filepath.Join(cache, hash+".narinfo"))
				if ni["StorePath"] != p || ni["Compression"] != tc.compression || !strings.HasSuffix(ni["URL"], tc.ext) {
					t.Errorf("narinfo of %s: %v", p, ni)
				}
				wantHash := Run(t, "nix-store", "--query", "--hash", p)
				if ni["NarHash"] != wantHash {
					t.Errorf("narinfo of %s: NarHash %s, want %s", p, ni["NarHash"], wantHash)
				}
				nar := filepath.Join(cache, ni["URL"])
				if _, err := os.Stat(nar); err != nil {
					t.Error(err)
				}
				if tc.compression != "none" {
					continue
				}
				// Uncompressed, the cache's NAR is exactly nix-store --dump.
				data, err := os.ReadFile(nar)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, DumpNAR(t, p)) {
					t.Errorf("%s differs from nix-store --dump %s", nar, p)
				}
			}
		})
	}
}

func TestDumpNAR(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	nar := DumpNAR(t, fx.Libgreet)
	magic := []byte("\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1")
	if !bytes.HasPrefix(nar, magic) {
		t.Errorf("NAR starts with %q, want the NAR magic", nar[:min(len(nar), 32)])
	}
	file := filepath.Join(t.TempDir(), "libgreet.nar")
	if err := os.WriteFile(file, nar, 0o644); err != nil {
		t.Fatal(err)
	}
	got := "sha256:" + Run(t, "nix-hash", "--type", "sha256", "--flat", "--base32", file)
	if want := Run(t, "nix-store", "--query", "--hash", fx.Libgreet); got != want {
		t.Errorf("hash of DumpNAR = %s, want NarHash %s", got, want)
	}
}

// shellQuote quotes args for sh.
func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func TestFreshStoreIsEmpty(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	out, err := FreshStore(t, fmt.Sprintf(`
		ls -A /nix/store | wc -l
		ls -A /nix/var/nix | wc -l
		if nix-store --check-validity %s 2>/dev/null; then echo valid; else echo invalid; fi`, shellQuote(fx.Hello)))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if diff := cmp.Diff([]string{"0", "0", "invalid"}, strings.Fields(out)); diff != "" {
		t.Errorf("fresh store (-want +got):\n%s", diff)
	}
	// The host's store is untouched.
	Run(t, "nix-store", "--check-validity", fx.Hello)
	if got := Run(t, fx.Hello+"/bin/hello"); got != greeting {
		t.Errorf("host hello printed %q after FreshStore", got)
	}

	if _, err := FreshStore(t, "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("FreshStore(exit 7) error = %v, want exit status 7", err)
	}
}

// TestFreshStoreSubstitutes runs DESIGN.md's second-machine scenario: a
// fresh host gets the closure from a file:// cache and never builds.
func TestFreshStoreSubstitutes(t *testing.T) {
	t.Parallel()
	fx := BuildFixture(t)
	cache := NixCopy(t, "zstd", fx.Hello)
	opts := append(SubstituterOpts("file://"+cache), "--option", "max-jobs", "0")
	script := fmt.Sprintf(`set -e
		nix-store --realise %[1]s %[2]s
		%[1]s/bin/hello
		nix-build %[3]s --argstr busybox %[4]s -A hello --no-out-link --option sandbox true %[2]s`,
		shellQuote(fx.Hello), shellQuote(opts...),
		shellQuote(filepath.Join(RepoRoot(t), "testdata", "fixture.nix")), shellQuote(BusyboxDir(t)))
	out, err := FreshStore(t, script)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"copying path '" + fx.Libgreet + "' from 'file://" + cache + "'", greeting, fx.Hello} {
		if !strings.Contains(out, want) {
			t.Errorf("fresh store output lacks %q:\n%s", want, out)
		}
	}
}
