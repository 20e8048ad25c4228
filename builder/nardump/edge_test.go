package nardump_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// NAR edge cases: Dump must be byte-identical to
// `nix-store --dump` on each. Both outputs are streamed into sha256, so the
// 1 GiB sparse file is never held; small trees are compared byte for byte
// to show where they differ.

type sum struct {
	hash string
	n    int64
}

type hashWriter struct {
	h    io.Writer
	n    int64
	keep *bytes.Buffer // nil: do not keep the bytes
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.keep != nil && w.keep.Len() < 1<<20 {
		w.keep.Write(p)
	}
	return w.h.Write(p)
}

func dumpGo(t *testing.T, p string, keep *bytes.Buffer) (sum, nardump.Info) {
	t.Helper()
	h := sha256.New()
	w := &hashWriter{h: h, keep: keep}
	d := nardump.Dumper{Tree: true}
	info, err := d.Dump(w, p)
	if err != nil {
		t.Fatalf("nardump.Dump: %v", err)
	}
	if info.Size != w.n {
		t.Errorf("Info.Size %d, but %d bytes written", info.Size, w.n)
	}
	return sum{hex.EncodeToString(h.Sum(nil)), w.n}, info
}

// dumpNix also reads Nix's NAR with the listing package, as it streams.
func dumpNix(t *testing.T, p string, keep *bytes.Buffer) (sum, *listing.Node) {
	t.Helper()
	h := sha256.New()
	w := &hashWriter{h: h, keep: keep}
	cmd := exec.Command("nix-store", "--dump", p)
	out, err := cmd.StdoutPipe()
	testkit.Must(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	testkit.Must(t, cmd.Start())
	// A dump that stalls is killed, which ends the read below and the Wait
	// after it (Wait may come only after the reads: it closes the pipe).
	stall := time.AfterFunc(proc.Timeout, func() { cmd.Process.Kill() })
	tree, lerr := listing.Read(io.TeeReader(out, w))
	err = cmd.Wait()
	if !stall.Stop() {
		t.Fatalf("nix-store --dump %s did not end within %v: killed", p, proc.Timeout)
	}
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v\n%s", p, err, stderr.String())
	}
	testkit.Must(t, lerr)
	return sum{hex.EncodeToString(h.Sum(nil)), w.n}, tree
}

func compare(t *testing.T, p string) nardump.Info {
	t.Helper()
	var goBytes, nixBytes bytes.Buffer
	start := time.Now()
	g, info := dumpGo(t, p, &goBytes)
	goTime := time.Since(start)
	start = time.Now()
	n, tree := dumpNix(t, p, &nixBytes)
	nixTime := time.Since(start)
	t.Logf("%d bytes of NAR; nardump %v, nix-store --dump %v", g.n, goTime.Round(time.Millisecond), nixTime.Round(time.Millisecond))
	if g != n {
		i := 0
		for i < goBytes.Len() && i < nixBytes.Len() && goBytes.Bytes()[i] == nixBytes.Bytes()[i] {
			i++
		}
		t.Errorf("NARs differ: nardump %d bytes sha256 %s, nix-store %d bytes sha256 %s; first difference at byte %d:\nnardump:   %q\nnix-store: %q",
			g.n, g.hash, n.n, n.hash, i, around(goBytes.Bytes(), i), around(nixBytes.Bytes(), i))
	}
	sameTree(t, tree, info.Tree)
	if want := depth(tree); info.MaxDepth != want {
		t.Errorf("Info.MaxDepth = %d, want %d", info.MaxDepth, want)
	}
	return info
}

// sameTree compares trees by their listings, which show every field: go-cmp
// takes time exponential in the depth of a tree.
func sameTree(t *testing.T, want, got *listing.Node) {
	t.Helper()
	if got == nil {
		t.Errorf("no tree")
		return
	}
	if d := cmp.Diff(string(listing.JSON(want)), string(listing.JSON(got))); d != "" {
		t.Errorf("tree differs from that of the NAR (-NAR +Info.Tree):\n%s", d)
	}
}

// depth counts the nodes on the longest chain from n down.
func depth(n *listing.Node) int {
	d := 0
	for _, e := range n.Entries {
		d = max(d, depth(e.Node))
	}
	return d + 1
}

func around(b []byte, i int) []byte {
	lo, hi := max(i-32, 0), min(i+32, len(b))
	if lo > hi {
		return nil
	}
	return b[lo:hi]
}

func TestEdgeCasesAgainstNix(t *testing.T) {
	nixtest.Require(t)
	type tc struct {
		name string
		make func(t *testing.T, root string) string // returns the path to dump
	}
	// Info.MaxDepth of some cases, against Nix >= 2.34's limit.
	wantDepth := map[string]int{
		"empty file": 1, "empty dir": 1, "empty file in a dir": 2, "top-level dangling symlink": 1,
		"100 levels deep": 102, "nesting at Nix's limit": nardump.MaxNixDepth, "nesting one beyond Nix's limit": nardump.MaxNixDepth + 1,
	}
	file := func(p string, data string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode is masked by the umask.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	cases := []tc{
		{"empty file", func(t *testing.T, r string) string {
			file(r+"/f", "", 0o644)
			return r + "/f"
		}},
		{"empty file in a dir", func(t *testing.T, r string) string {
			file(r+"/d/f", "", 0o644)
			return r + "/d"
		}},
		{"empty dir", func(t *testing.T, r string) string {
			testkit.Must(t, os.Mkdir(r+"/d", 0o755))
			return r + "/d"
		}},
		{"empty dirs nested", func(t *testing.T, r string) string {
			testkit.Must(t, os.MkdirAll(r+"/d/a/b/c", 0o755))
			testkit.Must(t, os.MkdirAll(r+"/d/e", 0o700))
			return r + "/d"
		}},
		{"100 levels deep", func(t *testing.T, r string) string {
			p := r + "/d" + strings.Repeat("/l", 100)
			file(p+"/leaf", "deep\n", 0o644)
			return r + "/d"
		}},
		{"255-byte names", func(t *testing.T, r string) string {
			long := strings.Repeat("n", 255)
			file(r+"/d/"+long, "long\n", 0o644)
			file(r+"/d/"+strings.Repeat("m", 254)+"/"+long, "x", 0o644)
			testkit.Must(t, os.Symlink(strings.Repeat("../", 300)+long, r+"/d/s"))
			return r + "/d"
		}},
		{"non-UTF-8 names", func(t *testing.T, r string) string {
			file(r+"/d/\xff\xfe", "latin\n", 0o644)
			file(r+"/d/caf\xe9", "e\n", 0o644)
			file(r+"/d/\x01\x7f", "ctl\n", 0o644)
			file(r+"/d/new\nline", "nl\n", 0o644)
			testkit.Must(t, os.Symlink("\xff\xfe", r+"/d/link"))
			return r + "/d"
		}},
		{"name order", func(t *testing.T, r string) string {
			for _, n := range []string{"a", "B", "a.b", "a-b", "a b", "ab", "_", "Z", "\xc3\xa9", "0", "~"} {
				file(r+"/d/"+n, n, 0o644)
			}
			return r + "/d"
		}},
		{"symlink to nowhere", func(t *testing.T, r string) string {
			testkit.Must(t, os.Mkdir(r+"/d", 0o755))
			testkit.Must(t, os.Symlink("/nonexistent/target", r+"/d/dangling"))
			testkit.Must(t, os.Symlink("missing", r+"/d/relative"))
			testkit.Must(t, os.Symlink("loop", r+"/d/loop"))
			return r + "/d"
		}},
		{"top-level dangling symlink", func(t *testing.T, r string) string {
			testkit.Must(t, os.Symlink("/nonexistent", r+"/s"))
			return r + "/s"
		}},
		{"executable bits", func(t *testing.T, r string) string {
			file(r+"/d/rwx", "#!/bin/sh\n", 0o755)
			file(r+"/d/user-x", "u\n", 0o700)
			file(r+"/d/group-x-only", "g\n", 0o654)
			file(r+"/d/other-x-only", "o\n", 0o645)
			file(r+"/d/setuid", "s\n", 0o4755)
			file(r+"/d/readonly", "r\n", 0o444)
			file(r+"/d/exec-empty", "", 0o755)
			return r + "/d"
		}},
		{"hard links", func(t *testing.T, r string) string {
			file(r+"/d/a", "shared\n", 0o644)
			testkit.Must(t, os.Link(r+"/d/a", r+"/d/b"))
			testkit.Must(t, os.MkdirAll(r+"/d/sub", 0o755))
			testkit.Must(t, os.Link(r+"/d/a", r+"/d/sub/c"))
			return r + "/d"
		}},
		{"file size multiple of 8 and not", func(t *testing.T, r string) string {
			for i := 0; i <= 17; i++ {
				file(filepath.Join(r, "d", strings.Repeat("x", i+1)), strings.Repeat("y", i), 0o644)
			}
			return r + "/d"
		}},
		{"sparse: data, hole, data, hole to an odd end", func(t *testing.T, r string) string {
			sparse(t, r+"/d/f", 8<<20+3, map[int64]string{0: "abc", 3<<20 + 5: strings.Repeat("Z", 1<<20)})
			return r + "/d"
		}},
		{"sparse: all hole", func(t *testing.T, r string) string {
			sparse(t, r+"/d/f", 1<<20+1, nil)
			sparse(t, r+"/d/g", 1<<20, nil)
			testkit.Must(t, os.Chmod(r+"/d/g", 0o755))
			return r + "/d"
		}},
		{"sparse: holes below the seeking threshold", func(t *testing.T, r string) string {
			sparse(t, r+"/d/f", 40<<10, map[int64]string{20 << 10: "mid"})
			return r + "/d"
		}},
		{"sparse: lone file", func(t *testing.T, r string) string {
			sparse(t, r+"/f", 4<<20, map[int64]string{1<<20 - 1: "straddles a page"})
			return r + "/f"
		}},
		{"sizes around the buffer", func(t *testing.T, r string) string {
			for _, n := range []int{8 << 10, 8<<10 - 1, 8<<10 + 1, 256<<10 - 1, 256 << 10, 256<<10 + 1, 1<<20 + 3} {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(i*7 + n)
				}
				file(r+"/d/"+strconv.Itoa(n), string(b), 0o644)
			}
			return r + "/d"
		}},
		{"exactly 8 KiB, lone", func(t *testing.T, r string) string {
			file(r+"/f", strings.Repeat("8", 8<<10), 0o755)
			return r + "/f"
		}},
		{"unicode names", func(t *testing.T, r string) string {
			for _, n := range []string{"ü", "日本語", "😀", "\u00e9", "e\u0301", "Ä", "a", "z", "\u2028", "\ufeffbom"} {
				file(r+"/d/"+n, n, 0o644)
			}
			return r + "/d"
		}},
		{"name order: prefixes and high bytes", func(t *testing.T, r string) string {
			for _, n := range []string{"a", "aa", "a.", "a!", "a~", "\x80", "\xff", "\x7f", " ", "!", "A", "a\xff", "a\x01"} {
				file(r+"/d/"+n, n, 0o644)
			}
			testkit.Must(t, os.Mkdir(r+"/d/a0", 0o755))
			file(r+"/d/a0/x", "in a dir", 0o644)
			return r + "/d"
		}},
		{"names of dots", func(t *testing.T, r string) string {
			// go-nix's NAR writer fails on names starting with "..".
			for _, n := range []string{".a", "..a", "...", ".-", "..", "-", ".\xff"} {
				file(r+"/d/"+n+"x", n, 0o644)
				file(r+"/d/sub"+n+"/"+n+"y", n, 0o644)
			}
			testkit.Must(t, os.Symlink("..", r+"/d/..b"))
			return r + "/d"
		}},
		{"symlinks to dirs", func(t *testing.T, r string) string {
			file(r+"/d/real/f", "f", 0o644)
			testkit.Must(t, os.Symlink("real", r+"/d/link"))
			testkit.Must(t, os.Symlink(".", r+"/d/dot"))
			testkit.Must(t, os.Symlink("..", r+"/d/up"))
			testkit.Must(t, os.Symlink(r+"/d/real", r+"/d/abs"))
			testkit.Must(t, os.Symlink("real/", r+"/d/slash"))
			return r + "/d"
		}},
		{"top-level symlink to a dir", func(t *testing.T, r string) string {
			file(r+"/d/f", "f", 0o644)
			testkit.Must(t, os.Symlink("d", r+"/s"))
			return r + "/s"
		}},
		{"many entries", func(t *testing.T, r string) string {
			// Many getdents calls, and names the system returns unsorted.
			for i := range 3000 {
				file(fmt.Sprintf("%s/d/%s%d", r, strings.Repeat("e", i%150), i), "", 0o644)
			}
			return r + "/d"
		}},
		{"nesting at Nix's limit", func(t *testing.T, r string) string {
			// MaxDepth 64: a file below 63 directories.
			p := r + "/d" + strings.Repeat("/l", 62)
			file(p+"/leaf", "64\n", 0o644)
			return r + "/d"
		}},
		{"nesting one beyond Nix's limit", func(t *testing.T, r string) string {
			p := r + "/d" + strings.Repeat("/l", 63)
			file(p+"/leaf", "65\n", 0o644)
			testkit.Must(t, os.Mkdir(r+"/d/shallow", 0o755))
			return r + "/d"
		}},
		{"executable files of every size class", func(t *testing.T, r string) string {
			file(r+"/d/x0", "", 0o100)
			file(r+"/d/x1", "1", 0o500)
			file(r+"/d/x8", "12345678", 0o711)
			file(r+"/d/x9", "123456789", 0o744)
			file(r+"/d/nx", "123456789", 0o077)
			return r + "/d"
		}},
		{"1 GiB sparse file", func(t *testing.T, r string) string {
			if testing.Short() {
				t.Skip("-short")
			}
			file(r+"/d/head", "h", 0o644)
			sparse(t, r+"/d/sparse", 1<<30, map[int64]string{1<<30 - 3: "end"})
			return r + "/d"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info := compare(t, c.make(t, t.TempDir()))
			if want, ok := wantDepth[c.name]; ok && info.MaxDepth != want {
				t.Errorf("MaxDepth = %d, want %d", info.MaxDepth, want)
			}
		})
	}
}

// sparse makes a file of size bytes holding data at the given offsets and
// holes elsewhere.
func sparse(t *testing.T, p string, size int64, data map[int64]string) {
	t.Helper()
	testkit.Must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	f, err := os.Create(p)
	testkit.Must(t, err)
	testkit.Must(t, f.Truncate(size))
	for off, s := range data {
		_, err := f.WriteAt([]byte(s), off)
		testkit.Must(t, err)
	}
	testkit.Must(t, f.Close())
}

// MaxDepth and MaxNixDepth against every Nix of the matrix: Nix 2.34 and
// later unpack a NAR iff its MaxDepth is at most MaxNixDepth (whatever the
// deepest node is), older ones any.
func TestDepthLimitAgainstNix(t *testing.T) {
	dir := t.TempDir()
	type tree struct {
		name  string
		dirs  int    // nested below the root
		leaf  string // "file", "symlink" or "" for none
		depth int
	}
	trees := []tree{
		{"file-64", nardump.MaxNixDepth - 2, "file", 64},
		{"file-65", nardump.MaxNixDepth - 1, "file", 65},
		{"dir-64", nardump.MaxNixDepth - 1, "", 64},
		{"dir-65", nardump.MaxNixDepth, "", 65},
		{"symlink-65", nardump.MaxNixDepth - 1, "symlink", 65},
	}
	for _, tr := range trees {
		p := filepath.Join(dir, tr.name) + strings.Repeat("/d", tr.dirs)
		testkit.Must(t, os.MkdirAll(p, 0o755))
		switch tr.leaf {
		case "file":
			testkit.Must(t, os.WriteFile(p+"/f", []byte("x"), 0o644))
		case "symlink":
			testkit.Must(t, os.Symlink("target", p+"/l"))
		}
		f, err := os.Create(filepath.Join(dir, tr.name+".nar"))
		testkit.Must(t, err)
		info, err := new(nardump.Dumper).Dump(f, filepath.Join(dir, tr.name))
		testkit.Must(t, err)
		testkit.Must(t, f.Close())
		if info.MaxDepth != tr.depth {
			t.Fatalf("%s: MaxDepth %d, want %d", tr.name, info.MaxDepth, tr.depth)
		}
	}
	for _, v := range nixtest.Versions(t) {
		t.Run(v.Name, func(t *testing.T) {
			var major, minor int
			if _, err := fmt.Sscanf(v.Name, "%d.%d", &major, &minor); err != nil {
				t.Fatal(err)
			}
			limited := major > 2 || major == 2 && minor >= 34
			for _, tr := range trees {
				out, err := v.FreshStore(t, fmt.Sprintf("nix-store --restore %s < %s",
					nixtest.ShellQuote(filepath.Join(dir, "out-"+v.Name+"-"+tr.name)), nixtest.ShellQuote(filepath.Join(dir, tr.name+".nar"))), dir)
				refused := err != nil
				if want := limited && tr.depth > nardump.MaxNixDepth; refused != want {
					t.Errorf("%s (MaxDepth %d): refused %v, want %v: %v\n%s", tr.name, tr.depth, refused, want, err, out)
				}
				if refused && !strings.Contains(out, fmt.Sprintf("exceeds maximum depth of %d", nardump.MaxNixDepth)) {
					t.Errorf("%s: refused for another reason:\n%s", tr.name, out)
				}
			}
		})
	}
}
