package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

// Bad input (issue 8): every case exits non-zero with a message naming the
// path or field at fault, and leaves no narinfo whose NAR is missing or
// partial. The store is a fake store directory (--store-dir), so the suite
// needs no Nix: real paths' NARs are computed with nardump.

const (
	hGood  = "0000000000000000000000000000000a"
	hFifo  = "0000000000000000000000000000000b"
	hSock  = "0000000000000000000000000000000c"
	hGone  = "0000000000000000000000000000000d"
	hOther = "0000000000000000000000000000000f"
)

type fakeStore struct {
	dir            string
	good           string // a path with a file, a dir and a symlink
	goodHash       string // its NAR hash, sha256:nix32
	goodSize       int
	fifo, sock     string // paths holding a FIFO and a socket
	gone           string // a valid name that does not exist
	other          string // a second good path
	otherHash      string
	otherSize      int
	sockFile, root string
}

func newFakeStore(t *testing.T) *fakeStore {
	t.Helper()
	root := t.TempDir()
	s := &fakeStore{root: root, dir: filepath.Join(root, "store")}
	s.good = s.dir + "/" + hGood + "-good"
	s.fifo = s.dir + "/" + hFifo + "-fifo"
	s.sock = s.dir + "/" + hSock + "-sock"
	s.gone = s.dir + "/" + hGone + "-gone"
	s.other = s.dir + "/" + hOther + "-other"
	for _, d := range []string{s.good + "/share", s.fifo, s.sock, s.other} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(s.good+"/share/greeting", []byte("hi\n"), 0o644))
	must(t, os.Symlink("share/greeting", s.good+"/link"))
	must(t, os.WriteFile(s.other+"/data", bytes.Repeat([]byte("other "), 1000), 0o644))
	must(t, syscall.Mkfifo(s.fifo+"/pipe", 0o644))
	s.sockFile = s.sock + "/socket"
	l, err := net.Listen("unix", s.sockFile)
	must(t, err)
	t.Cleanup(func() { l.Close() })
	s.goodHash, s.goodSize = narHash(t, s.good)
	s.otherHash, s.otherSize = narHash(t, s.other)
	return s
}

func narHash(t *testing.T, p string) (string, int) {
	t.Helper()
	var b bytes.Buffer
	must(t, nardump.Dump(&b, p))
	sum := sha256.Sum256(b.Bytes())
	h := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum[:], nixhash.NixBase32, true)
	return h.String(), b.Len()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func entry(path, hash string, size int, refs ...string) string {
	r := `[]`
	if len(refs) > 0 {
		r = `["` + strings.Join(refs, `","`) + `"]`
	}
	return fmt.Sprintf(`{"path":%q,"narHash":%q,"narSize":%d,"references":%s}`, path, hash, size, r)
}

func attrsJSON(entries ...string) string {
	return `{"closure":[` + strings.Join(entries, ",") + `]}`
}

func runCLI(args ...string) (int, string) {
	var out, errb bytes.Buffer
	env := cli.Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb}
	code := cli.Main(context.Background(), args, env)
	return code, errb.String()
}

// checkNoPartial fails if dir holds a narinfo whose NAR is missing,
// partial or wrong: verify must find no problem (dangling references
// aside, which a partial closure may have).
func checkNoPartial(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "nix-cache-info")); err != nil {
		return // nothing was written
	}
	_, err := verify.Cache(context.Background(), verify.Options{Dir: dir}, func(p verify.Problem) {
		if !strings.Contains(p.Msg, "has no narinfo in the cache") {
			t.Errorf("cache left behind: %s", p)
		}
	})
	if err != nil {
		t.Errorf("verify %s: %v", dir, err)
	}
	// A failed run removes its temporary files.
	tmps, _ := filepath.Glob(filepath.Join(dir, "nar", ".tmp-*"))
	more, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if tmps = append(tmps, more...); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %q", tmps)
	}
}

func TestBadInput(t *testing.T) {
	s := newFakeStore(t)
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
	good := entry(s.good, s.goodHash, s.goodSize)
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
		{name: "entry without path", attrs: `{"closure":[{"narHash":"` + s.goodHash + `","narSize":1,"references":[]}]}`, code: 1,
			want: []string{"entry 0", `missing field "path"`}},
		{name: "entry without narHash", attrs: `{"closure":[{"path":"` + s.good + `","narSize":1,"references":[]}]}`, code: 1,
			want: []string{s.good, `missing field "narHash"`}},
		{name: "entry without narSize", attrs: `{"closure":[{"path":"` + s.good + `","narHash":"` + s.goodHash + `","references":[]}]}`, code: 1,
			want: []string{s.good, `missing field "narSize"`}},
		{name: "malformed narHash", attrs: attrsJSON(entry(s.good, "sha256:nothash", 1)), code: 1,
			want: []string{s.good, `NAR hash "sha256:nothash"`}},
		{name: "path outside the store", attrs: attrsJSON(entry("/tmp/"+hGood+"-good", s.goodHash, s.goodSize)), code: 1,
			want: []string{"/tmp/" + hGood + "-good", "not in the store directory"}},
		{name: "path with ..", attrs: attrsJSON(entry(s.dir+"/../"+hGood+"-good", s.goodHash, s.goodSize)), code: 1,
			want: []string{s.dir + "/../" + hGood + "-good", "not a top-level store path"}},
		{name: "subpath", attrs: attrsJSON(entry(s.good+"/share", s.goodHash, s.goodSize)), code: 1,
			want: []string{s.good + "/share", "not a top-level store path"}},
		{name: "invalid name", attrs: attrsJSON(entry(s.dir+"/notahash-good", s.goodHash, s.goodSize)), code: 1,
			want: []string{s.dir + "/notahash-good", "not a valid store path"}},
		{name: "reference outside the closure", attrs: attrsJSON(entry(s.good, s.goodHash, s.goodSize, s.other)), code: 1,
			want: []string{s.good, s.other, "not in the closure"}},
		{name: "path does not exist", attrs: attrsJSON(good, entry(s.gone, s.goodHash, s.goodSize)), code: 1,
			want: []string{s.gone, "no such file or directory"}, noNarInfo: []string{s.gone}},
		{name: "NarHash mismatch", attrs: attrsJSON(entry(s.good, s.otherHash, s.goodSize)), code: 1,
			want: []string{s.good, "NAR hash mismatch", s.otherHash, s.goodHash}, noNarInfo: []string{s.good}},
		{name: "NarSize mismatch", attrs: attrsJSON(entry(s.good, s.goodHash, s.goodSize+8)), code: 1,
			want: []string{s.good, "NAR size mismatch", fmt.Sprint(s.goodSize + 8)}, noNarInfo: []string{s.good}},
		{name: "one bad path among good ones", attrs: attrsJSON(entry(s.other, s.otherHash, s.otherSize), entry(s.good, s.otherHash, s.goodSize)), code: 1,
			want: []string{s.good, "NAR hash mismatch"}, noNarInfo: []string{s.good}},
		{name: "unsupported compression", attrs: attrsJSON(good), args: []string{"--compression", "lz4"}, code: 2,
			want: []string{"lz4"}},
		{name: "unsupported compression in attrs", attrs: `{"compression":"brotli","closure":[` + good + `]}`, code: 2,
			want: []string{"brotli"}},
		{name: "level out of range", attrs: attrsJSON(good), args: []string{"--compression", "xz", "--level", "42"}, code: 2,
			want: []string{"42"}},
		{name: "zstd level out of range", attrs: attrsJSON(good), args: []string{"--level", "23"}, code: 2,
			want: []string{"23"}},
		{name: "fifo in a store path", graph: s.fifo + "\n\n0\n", code: 1,
			want: []string{s.fifo + "/pipe", "named pipe"}, noNarInfo: []string{s.fifo}},
		{name: "socket in a store path", graph: s.sock + "\n\n0\n", code: 1,
			want: []string{s.sockFile, "socket"}, noNarInfo: []string{s.sock}},
		{name: "graph file missing", args: []string{"--graph", "ATTRS.missing"}, code: 1,
			want: []string{"ATTRS.missing", "no such file"}},
		{name: "graph truncated", graph: s.good + "\n\n2\n" + s.other + "\n", code: 1,
			want: []string{"line 5", "unexpected end of file", "a reference"}},
		{name: "registration missing", args: []string{"--closure-info", "ATTRS.missing"}, code: 1,
			want: []string{"ATTRS.missing/registration", "no such file"}},
		{name: "out is a file", attrs: attrsJSON(good), args: []string{"--out", "ATTRS"}, code: 1,
			want: []string{"ATTRS", "not a directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "cache")
			attrsFile := filepath.Join(dir, "attrs.json")
			args := []string{"--store-dir", s.dir, "--quiet"}
			switch {
			case c.attrs != "":
				must(t, os.WriteFile(attrsFile, []byte(c.attrs), 0o644))
				args = append(args, "--attrs", attrsFile)
			case c.graph != "":
				attrsFile = filepath.Join(dir, "graph")
				must(t, os.WriteFile(attrsFile, []byte(c.graph), 0o644))
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
			code, stderr := runCLI(args...)
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
				hp := strings.SplitN(filepath.Base(p), "-", 2)[0]
				if _, err := os.Stat(filepath.Join(out, hp+".narinfo")); err == nil {
					t.Errorf("a narinfo for the failed path %s was written", p)
				}
			}
			checkNoPartial(t, out)
		})
	}
}

// TestSpecialFilesInCache: verify and sign open what a cache holds; a FIFO
// there used to block them forever (and a signal could not end the wait).
// Each must name the file and say what it is.
func TestSpecialFilesInCache(t *testing.T) {
	s := newFakeStore(t)
	for _, where := range []string{"narinfo", "nar", "listing", "nix-cache-info"} {
		t.Run(where, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			attrsFile := filepath.Join(t.TempDir(), "attrs.json")
			must(t, os.WriteFile(attrsFile, []byte(attrsJSON(entry(s.good, s.goodHash, s.goodSize))), 0o644))
			if code, stderr := runCLI("--quiet", "--store-dir", s.dir, "--attrs", attrsFile, "--out", dir, "--nar-listing"); code != 0 {
				t.Fatalf("write: %s", stderr)
			}
			var victim string
			switch where {
			case "narinfo":
				victim = filepath.Join(dir, hOther+".narinfo")
			case "nar":
				nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*.nar*"))
				victim = nars[0]
			case "listing":
				victim = filepath.Join(dir, hGood+".ls")
			case "nix-cache-info":
				victim = filepath.Join(dir, "nix-cache-info")
			}
			os.Remove(victim)
			must(t, syscall.Mkfifo(victim, 0o644))
			for _, args := range [][]string{{"verify", "--store-dir", s.dir, dir}, {"sign", "--key-file", "KEY", dir}} {
				if args[0] == "sign" {
					if where == "nar" || where == "listing" {
						continue // sign reads neither
					}
					key := filepath.Join(t.TempDir(), "key")
					if code, stderr := runCLI("keygen", "--secret-key-file", key, "test-1"); code != 0 {
						t.Skipf("keygen: %s", stderr)
					}
					args[2] = key
				}
				type res struct {
					code   int
					stderr string
				}
				done := make(chan res, 1)
				go func() {
					var out, errb bytes.Buffer
					env := cli.Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errb}
					code := cli.Main(context.Background(), args, env)
					done <- res{code, out.String() + errb.String()}
				}()
				select {
				case r := <-done:
					if r.code == 0 {
						t.Errorf("%s succeeded with a FIFO at %s:\n%s", args[0], victim, r.stderr)
					}
					for _, w := range []string{victim, "named pipe"} {
						if !strings.Contains(r.stderr, w) {
							t.Errorf("%s: output lacks %q:\n%s", args[0], w, r.stderr)
						}
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%s hangs on a FIFO at %s", args[0], victim)
				}
			}
		})
	}
}
