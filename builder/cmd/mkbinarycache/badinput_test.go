package main_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// Bad input: every case exits non-zero with a message naming the path or
// field at fault, and leaves no narinfo whose NAR is missing or partial.
// The store is a fake store directory (--store-dir), so the suite needs no
// Nix.

// badStore is a store with paths good and bad.
type badStore struct {
	*testkit.Store
	good, other closure.Path // good has a file, a dir and a symlink
	fifo, sock  string       // paths holding a FIFO and a socket
	sockFile    string
	gone        string // a valid name that does not exist
}

func newBadStore(t *testing.T) *badStore {
	t.Helper()
	s := &badStore{Store: testkit.NewStore(t)}
	c := s.Add(t, testkit.Path{Name: "good", Files: map[string]string{"share/greeting": "hi\n"},
		Symlinks: map[string]string{"link": "share/greeting"}},
		testkit.Path{Name: "other", Files: map[string]string{"data": strings.Repeat("other ", 1000)}},
		testkit.Path{Name: "fifo"}, testkit.Path{Name: "sock"})
	s.good, s.other, s.fifo, s.sock = c[0], c[1], c[2].StorePath, c[3].StorePath
	s.gone = s.Path("gone")
	testkit.Must(t, syscall.Mkfifo(s.fifo+"/pipe", 0o644))
	s.sockFile = s.sock + "/socket"
	l, err := net.Listen("unix", s.sockFile)
	testkit.Must(t, err)
	t.Cleanup(func() { l.Close() })
	return s
}

func TestBadInput(t *testing.T) {
	s := newBadStore(t)
	type tc struct {
		name  string
		attrs string   // written to attrs.json and passed as --attrs, if set
		graph string   // written to graph and passed as --graph, if set
		args  []string // more arguments; OUT and ATTRS are replaced
		code  int
		want  []string // substrings of stderr
		// noNarInfo lists store paths that must not have a narinfo.
		noNarInfo []string
	}
	good, goodHash, goodSize := s.good.StorePath, narHash(s.good), s.good.NarSize
	other, otherHash := s.other.StorePath, narHash(s.other)
	hGood := testkit.HashPartOfName("good")
	cases := []tc{
		{name: "attrs file missing", args: []string{"--attrs", "ATTRS.missing"}, code: 1,
			want: []string{"ATTRS.missing", "no such file"}},
		{name: "attrs malformed", attrs: `{"closure": [`, code: 1,
			want: []string{"ATTRS", "not a structured attrs JSON object"}},
		{name: "attrs not an object", attrs: `[1,2]`, code: 1,
			want: []string{"ATTRS", "not a structured attrs JSON object"}},
		{name: "no closure attribute", attrs: `{"outputs":{"out":"/x"}}`, code: 1,
			want: []string{"ATTRS", `no attribute "closure"`}},
		{name: "closureAttr names nothing", attrs: `{"closureAttr":"mine"}`, code: 1,
			want: []string{"ATTRS", `no attribute "mine"`}},
		{name: "closure not a list", attrs: `{"closure":{"a":1}}`, code: 1,
			want: []string{"ATTRS", `attribute "closure"`, "not a list"}},
		{name: "entry without path", attrs: `{"closure":[{"narHash":"` + goodHash + `","narSize":1,"references":[]}]}`, code: 1,
			want: []string{"entry 0", `missing field "path"`}},
		{name: "entry without narHash", attrs: `{"closure":[{"path":"` + good + `","narSize":1,"references":[]}]}`, code: 1,
			want: []string{good, `missing field "narHash"`}},
		{name: "entry without narSize", attrs: `{"closure":[{"path":"` + good + `","narHash":"` + goodHash + `","references":[]}]}`, code: 1,
			want: []string{good, `missing field "narSize"`}},
		{name: "malformed narHash", attrs: attrsJSON(entry(good, "sha256:nothash", 1)), code: 1,
			want: []string{good, `NAR hash "sha256:nothash"`}},
		{name: "path outside the store", attrs: attrsJSON(entry("/tmp/"+hGood+"-good", goodHash, goodSize)), code: 1,
			want: []string{"/tmp/" + hGood + "-good", "not in the store directory"}},
		{name: "path with ..", attrs: attrsJSON(entry(s.Dir+"/../"+hGood+"-good", goodHash, goodSize)), code: 1,
			want: []string{s.Dir + "/../" + hGood + "-good", "not a top-level store path"}},
		{name: "subpath", attrs: attrsJSON(entry(good+"/share", goodHash, goodSize)), code: 1,
			want: []string{good + "/share", "not a top-level store path"}},
		{name: "invalid name", attrs: attrsJSON(entry(s.Dir+"/notahash-good", goodHash, goodSize)), code: 1,
			want: []string{s.Dir + "/notahash-good", "not a valid store path"}},
		{name: "reference outside the closure", attrs: attrsJSON(entry(good, goodHash, goodSize, other)), code: 1,
			want: []string{good, other, "not in the closure"}},
		{name: "path does not exist", attrs: attrsJSON(entryOf(s.good), entry(s.gone, goodHash, goodSize)), code: 1,
			want: []string{s.gone, "no such file or directory"}, noNarInfo: []string{s.gone}},
		{name: "NarHash mismatch", attrs: attrsJSON(entry(good, otherHash, goodSize)), code: 1,
			want: []string{good, "NAR hash mismatch", otherHash, goodHash}, noNarInfo: []string{good}},
		{name: "NarSize mismatch", attrs: attrsJSON(entry(good, goodHash, goodSize+8)), code: 1,
			want: []string{good, "NAR size mismatch", fmt.Sprint(goodSize + 8)}, noNarInfo: []string{good}},
		{name: "one bad path among good ones", attrs: attrsJSON(entryOf(s.other), entry(good, otherHash, goodSize)), code: 1,
			want: []string{good, "NAR hash mismatch"}, noNarInfo: []string{good}},
		{name: "unsupported compression", attrs: attrsJSON(entryOf(s.good)), args: []string{"--compression", "lz4"}, code: 2,
			want: []string{"lz4"}},
		{name: "unsupported compression in attrs", attrs: `{"compression":"brotli","closure":[` + entryOf(s.good) + `]}`, code: 2,
			want: []string{"brotli"}},
		{name: "level out of range", attrs: attrsJSON(entryOf(s.good)), args: []string{"--compression", "xz", "--level", "42"}, code: 2,
			want: []string{"42"}},
		{name: "zstd level out of range", attrs: attrsJSON(entryOf(s.good)), args: []string{"--level", "23"}, code: 2,
			want: []string{"23"}},
		{name: "zstd level 0", attrs: attrsJSON(entryOf(s.good)), args: []string{"--level", "0"}, code: 2,
			want: []string{"level 0 out of range 1..22"}},
		{name: "fifo in a store path", graph: s.fifo + "\n\n0\n", code: 1,
			want: []string{s.fifo + "/pipe", "named pipe"}, noNarInfo: []string{s.fifo}},
		{name: "socket in a store path", graph: s.sock + "\n\n0\n", code: 1,
			want: []string{s.sockFile, "socket"}, noNarInfo: []string{s.sock}},
		{name: "graph file missing", args: []string{"--graph", "ATTRS.missing"}, code: 1,
			want: []string{"ATTRS.missing", "no such file"}},
		{name: "graph truncated", graph: good + "\n\n2\n" + other + "\n", code: 1,
			want: []string{"line 5", "unexpected end of file", "a reference"}},
		{name: "registration missing", args: []string{"--closure-info", "ATTRS.missing"}, code: 1,
			want: []string{"ATTRS.missing/registration", "no such file"}},
		{name: "out is a file", attrs: attrsJSON(entryOf(s.good)), args: []string{"--out", "ATTRS"}, code: 1,
			want: []string{"ATTRS", "not a directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "cache")
			attrsFile := filepath.Join(dir, "attrs.json")
			args := []string{"--store-dir", s.Dir, "--quiet"}
			switch {
			case c.attrs != "":
				testkit.Must(t, os.WriteFile(attrsFile, []byte(c.attrs), 0o644))
				args = append(args, "--attrs", attrsFile)
			case c.graph != "":
				attrsFile = filepath.Join(dir, "graph")
				testkit.Must(t, os.WriteFile(attrsFile, []byte(c.graph), 0o644))
				args = append(args, "--graph", attrsFile)
			}
			hasOut := false
			for _, a := range c.args {
				hasOut = hasOut || a == "--out"
				args = append(args, strings.ReplaceAll(a, "ATTRS", attrsFile))
			}
			if !hasOut {
				args = append(args, "--out", out)
			}
			code, _, stderr := runMain(args...)
			if code != c.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, c.code, stderr)
			}
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "ATTRS", attrsFile)
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, p := range c.noNarInfo {
				if _, err := os.Stat(filepath.Join(out, cachedir.NarInfoName(p))); err == nil {
					t.Errorf("a narinfo for the failed path %s was written", p)
				}
			}
			testkit.CheckCache(t, out)
		})
	}
}

// TestSpecialFilesInCache: verify and sign open what a cache holds; a FIFO
// there used to block them forever (and a signal could not end the wait).
// Each must name the file and say what it is.
func TestSpecialFilesInCache(t *testing.T) {
	s := newBadStore(t)
	for _, where := range []string{"narinfo", "nar", "listing", "nix-cache-info"} {
		t.Run(where, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			attrsFile := writeTemp(t, "attrs.json", attrsJSON(entryOf(s.good)))
			if code, _, stderr := runMain("--quiet", "--store-dir", s.Dir, "--attrs", attrsFile, "--out", dir, "--nar-listing"); code != 0 {
				t.Fatalf("write: %s", stderr)
			}
			var victim string
			switch where {
			case "narinfo":
				victim = filepath.Join(dir, cachedir.NarInfoName(s.other.StorePath))
			case "nar":
				nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*.nar*"))
				victim = nars[0]
			case "listing":
				victim = filepath.Join(dir, cachedir.ListingName(s.good.StorePath))
			case "nix-cache-info":
				victim = filepath.Join(dir, "nix-cache-info")
			}
			os.Remove(victim)
			testkit.Must(t, syscall.Mkfifo(victim, 0o644))
			for _, args := range [][]string{{"verify", "--store-dir", s.Dir, dir}, {"sign", "--key-file", "KEY", dir}} {
				if args[0] == "sign" {
					if where == "nar" || where == "listing" {
						continue // sign reads neither
					}
					key := filepath.Join(t.TempDir(), "key")
					if code, _, stderr := runMain("keygen", "--secret-key-file", key, "test-1"); code != 0 {
						t.Skipf("keygen: %s", stderr)
					}
					args[2] = key
				}
				type res struct {
					code   int
					output string
				}
				done := make(chan res, 1)
				go func() {
					code, stdout, stderr := runMain(args...)
					done <- res{code, stdout + stderr}
				}()
				select {
				case r := <-done:
					if r.code == 0 {
						t.Errorf("%s succeeded with a FIFO at %s:\n%s", args[0], victim, r.output)
					}
					for _, w := range []string{victim, "named pipe"} {
						if !strings.Contains(r.output, w) {
							t.Errorf("%s: output lacks %q:\n%s", args[0], w, r.output)
						}
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%s hangs on a FIFO at %s", args[0], victim)
				}
			}
		})
	}
}
