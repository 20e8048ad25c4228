package nixtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
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
	select {
	case <-done:
	case <-time.After(proc.Timeout):
		panic("the function under test did not return within " + proc.Timeout.String())
	}
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

// A dynamically linked builder or busybox would fail only inside the
// sandbox, with an obscure "No such file or directory".
func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("/bin/sh"); err == nil {
		t.Error("CheckStatic(/bin/sh) accepted a dynamic binary")
	}
	if err := CheckStatic(filepath.Join(BusyboxDir(t), "bin", "busybox")); err != nil {
		t.Error(err)
	}
}

func TestNixString(t *testing.T) {
	Require(t)
	s := "a\\b \"q\" ${x} $y\nline\ttab ''"
	got := Run(t, "nix-instantiate", "--eval", "--json", "--expr", NixString(s))
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
}`, NixString(BusyboxDir(t)), NixString(fx.Hello))
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

func TestMountList(t *testing.T) {
	got := mountList([]string{"/tmp/a/b", "/work/main/", "/tmp", "/tmp/a", "/work/main2", "/work/main"})
	if diff := cmp.Diff([]string{"/tmp", "/work/main", "/work/main2"}, got); diff != "" {
		t.Errorf("mountList (-want +got):\n%s", diff)
	}
}

// A version that is missing must fail CI, not skip it.
func TestVersionRequire(t *testing.T) {
	v := Version{Name: "9.9", missing: "no rootfs"}
	t.Setenv(RequireEnv, "1")
	f := call(func(tb testing.TB) { v.Require(tb) })
	if !f.failed || f.skipped || !strings.Contains(f.msg, "Nix 9.9") {
		t.Errorf("missing version with %s=1: skipped=%v failed=%v msg=%q; want a failure", RequireEnv, f.skipped, f.failed, f.msg)
	}
}

// Each version's fresh host starts with an empty store of its own on a
// tmpfs, really runs that version, builds the fixture sandboxed to the
// host's store paths, and leaves the host's store untouched.
func TestFreshStore(t *testing.T) {
	fx := BuildFixture(t)
	vs := Versions(t)
	if len(vs) != 1+len(suites) || !vs[0].Host() {
		t.Fatalf("Versions = %+v, want the host's and %d more", vs, len(suites))
	}
	for _, v := range vs {
		t.Run("nix-"+v.Name, func(t *testing.T) {
			t.Parallel()
			v.Require(t)
			out, err := v.FreshStore(t, fmt.Sprintf(`
				ls -A /nix/store | wc -l
				ls -A /nix/var/nix | wc -l
				stat -f -c %%T /nix
				stat -c %%a /nix
				if nix-store --check-validity %[1]s 2>/dev/null; then echo valid; else echo invalid; fi
				nix --version
				%[2]s && %[1]s/bin/hello`, ShellQuote(fx.Hello), FixtureScript(t)))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			want := []string{"0", "0", "tmpfs", "755", "invalid", v.Full}
			if len(lines) < len(want)+1 {
				t.Fatalf("fresh store printed:\n%s", out)
			}
			if diff := cmp.Diff(want, lines[:len(want)]); diff != "" {
				t.Errorf("fresh store (-want +got):\n%s", diff)
			}
			if last := lines[len(lines)-1]; last != greeting {
				t.Errorf("hello built in the fresh store printed %q:\n%s", last, out)
			}
		})
	}
	t.Cleanup(func() {
		// The host's store is untouched.
		Run(t, "nix-store", "--check-validity", fx.Hello)
		if got := Run(t, fx.Hello+"/bin/hello"); got != greeting {
			t.Errorf("host hello printed %q after the fresh stores", got)
		}
	})
	if _, err := FreshStore(t, "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("FreshStore(exit 7) error = %v, want exit status 7", err)
	}
}
