package main_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

// upstreamSetup is a store of four paths, app -> gcc -> glibc and tool,
// and a signed upstream on loopback serving glibc and gcc.
type upstreamSetup struct {
	s                     *testkit.Store
	glibc, gcc, app, tool string
	attrs                 string // structured attrs of all four
	srv                   *testkit.Server
	env                   map[string]string
	upstreamArgs          []string
}

func newUpstreamSetup(t *testing.T) *upstreamSetup {
	s := testkit.NewStore(t)
	c := s.Add(t,
		testkit.Path{Name: "glibc", Files: map[string]string{"lib/libc.so": strings.Repeat("libc", 1000)}},
		testkit.Path{Name: "gcc", Files: map[string]string{"bin/gcc": "gcc"}, Refs: []string{"glibc"}},
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app"}, Refs: []string{"gcc", "glibc"}},
		testkit.Path{Name: "tool", Files: map[string]string{"bin/tool": "tool"}, Refs: []string{"glibc"}},
	)
	up := filepath.Join(t.TempDir(), "upstream")
	testkit.WriteUpstream(t, up, c[:2], s.Options(compress.Zstd))
	u := &upstreamSetup{s: s, glibc: c[0].StorePath, gcc: c[1].StorePath, app: c[2].StorePath, tool: c[3].StorePath,
		srv: testkit.Serve(t, up), env: map[string]string{"XDG_CACHE_HOME": t.TempDir()}}
	var entries []string
	for _, p := range c {
		entries = append(entries, entryOf(p))
	}
	u.attrs = writeTemp(t, "attrs.json", attrsJSON(entries...))
	u.upstreamArgs = []string{"--upstream", u.srv.URL, "--upstream-key", testkit.TestPublic}
	return u
}

func (u *upstreamSetup) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, stdout, stderr := runMainEnv(func(k string) string { return u.env[k] }, args...)
	return code, stdout + stderr
}

func (u *upstreamSetup) must(t *testing.T, args ...string) string {
	t.Helper()
	code, out := u.run(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("mkbinarycache %q: exit %d\n%s", args, code, out)
	}
	return out
}

// A cache written with --upstream holds only what upstream lacks, and
// every command that checks closure accepts it given the same upstream.
func TestUpstreamCommands(t *testing.T) {
	u := newUpstreamSetup(t)
	dir := filepath.Join(t.TempDir(), "cache")
	out := u.must(t, append([]string{"--out", dir, "--store-dir", u.s.Dir, "--attrs", u.attrs}, u.upstreamArgs...)...)
	if !strings.Contains(out, "2 paths served upstream") {
		t.Errorf("output lacks the served count:\n%s", out)
	}
	if d := cmp.Diff([]string{"app", "tool"}, narinfoNames(t, dir)); d != "" {
		t.Errorf("cache (-want +got):\n%s", d)
	}
	if n, all := u.srv.Requests(); n != 4 || all != 5 {
		t.Errorf("first run: %d narinfo requests, %d in all; want 4 (each path) and 5", n, all)
	}
	testkit.CheckCache(t, dir, u.srv.URL)

	// Again: only the paths the cache lacks are asked about, and those
	// upstream served are remembered, so nothing is asked.
	n0, all0 := u.srv.Requests() // CheckCache asked too
	u.must(t, append([]string{"--out", dir, "--store-dir", u.s.Dir, "--attrs", u.attrs}, u.upstreamArgs...)...)
	if n, all := u.srv.Requests(); n != n0 || all != all0 {
		t.Errorf("second run: %d narinfo requests, %d in all; want none", n-n0, all-all0)
	}
	// Without the memory, only glibc and gcc are asked again.
	u.env["XDG_CACHE_HOME"] = t.TempDir()
	u.must(t, append([]string{"--out", dir, "--store-dir", u.s.Dir, "--attrs", u.attrs}, u.upstreamArgs...)...)
	if n, _ := u.srv.Requests(); n != n0+2 {
		t.Errorf("third run: %d narinfo requests, want 2", n-n0)
	}

	// verify: the references to gcc and glibc are problems only without
	// the upstream.
	if code, out := u.run(t, "verify", dir); code != cli.ExitFailure || !strings.Contains(out, "has no narinfo") {
		t.Errorf("verify without --upstream: exit %d\n%s", code, out)
	}
	u.must(t, append([]string{"verify", dir}, u.upstreamArgs...)...)
	if code, out := u.run(t, "verify", "--upstream", u.srv.URL, "--upstream-key", "other-1:JfJBfJgWKGm4mNSLtyjdXzs+bD5ld7173iDfpZHM8C4=", dir); code != cli.ExitFailure || !strings.Contains(out, "nor upstream") {
		t.Errorf("verify trusting another key: exit %d\n%s", code, out)
	}

	// copy: needs the upstream to accept SRC, and copies nothing it serves.
	dst := filepath.Join(t.TempDir(), "copy")
	if code, out := u.run(t, "copy", "--from", dir, "--to", dst); code != cli.ExitFailure || !strings.Contains(out, "not closed") {
		t.Errorf("copy without --upstream: exit %d\n%s", code, out)
	}
	u.must(t, append([]string{"copy", "--from", dir, "--to", dst}, u.upstreamArgs...)...)
	if d := cmp.Diff([]string{"app", "tool"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy (-want +got):\n%s", d)
	}
	testkit.CheckCache(t, dst, u.srv.URL)

	// gc, without network: missing references are no warning, a kept
	// path served upstream is no error.
	before, _ := u.srv.Requests()
	out = u.must(t, "gc", "--upstream", u.srv.URL, "--keep", u.app, "--keep", u.gcc, dir)
	if strings.Contains(out, "warning") {
		t.Errorf("gc --upstream warned:\n%s", out)
	}
	if after, _ := u.srv.Requests(); after != before {
		t.Errorf("gc made %d requests", after-before)
	}
	if d := cmp.Diff([]string{"app"}, narinfoNames(t, dir)); d != "" {
		t.Errorf("after gc (-want +got):\n%s", d)
	}
	testkit.CheckCache(t, dir, u.srv.URL)
	if code, out := u.run(t, "gc", "--keep", u.gcc, dir); code != cli.ExitFailure || !strings.Contains(out, "without a narinfo") {
		t.Errorf("gc --keep of an upstream path without --upstream: exit %d\n%s", code, out)
	}
}

// copy with --upstream does not copy what upstream serves, even when SRC
// has it.
func TestUpstreamCopySkipsServed(t *testing.T) {
	u := newUpstreamSetup(t)
	full := filepath.Join(t.TempDir(), "full")
	u.must(t, "--out", full, "--store-dir", u.s.Dir, "--attrs", u.attrs)
	dst := filepath.Join(t.TempDir(), "dst")
	u.must(t, append([]string{"copy", "--from", full, "--to", dst, u.app}, u.upstreamArgs...)...)
	if d := cmp.Diff([]string{"app"}, narinfoNames(t, dst)); d != "" {
		t.Errorf("copy (-want +got):\n%s", d)
	}
}

// An upstream that fails loses no path: everything is stored, with a
// warning.
func TestUpstreamDown(t *testing.T) {
	u := newUpstreamSetup(t)
	u.srv.SetStatus(func(*http.Request) int { return http.StatusServiceUnavailable })
	dir := filepath.Join(t.TempDir(), "cache")
	out := u.must(t, append([]string{"--out", dir, "--store-dir", u.s.Dir, "--attrs", u.attrs}, u.upstreamArgs...)...)
	if !strings.Contains(out, "503") || !strings.Contains(out, "stored here") {
		t.Errorf("no warning naming the 503:\n%s", out)
	}
	if d := cmp.Diff([]string{"app", "gcc", "glibc", "tool"}, narinfoNames(t, dir)); d != "" {
		t.Errorf("cache (-want +got):\n%s", d)
	}
	if n, all := u.srv.Requests(); n != 0 || all != 1 {
		t.Errorf("%d narinfo requests, %d in all: want only nix-cache-info", n, all)
	}
}

// push refuses a reference neither in the cache nor in the bucket, unless
// upstream serves it.
func TestUpstreamPush(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	u := newUpstreamSetup(t)
	dir := filepath.Join(t.TempDir(), "cache")
	u.must(t, append([]string{"--out", dir, "--store-dir", u.s.Dir, "--attrs", u.attrs}, u.upstreamArgs...)...)
	code, stderr := pushCLI("push", dir, s.URL("cache"))
	if code != cli.ExitFailure || !strings.Contains(stderr, "neither in") {
		t.Errorf("push without --upstream: exit %d\n%s", code, stderr)
	}
	push(t, append([]string{dir, s.URL("cache")}, u.upstreamArgs...)...)
	objs := s.Objects(t, "cache")
	var narinfos []string
	for o := range objs {
		if strings.HasSuffix(o, ".narinfo") {
			narinfos = append(narinfos, o)
		}
	}
	if len(narinfos) != 2 {
		t.Errorf("bucket narinfos %q, want app's and tool's", narinfos)
	}
}
