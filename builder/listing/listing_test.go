package listing

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nar/ls"
)

var writeTree = flag.String("write-tree", "", "write the test tree to `DIR` and exit (to make the golden file with Nix)")

// A file tree with every kind of node and the names that JSON escaping and
// NAR ordering get wrong. testdata/tree.ls is what Nix 2.8 wrote for it:
//
//	go test ./builder/listing -run TestGolden -write-tree /tmp/tree
//	nix copy --to 'file:///tmp/c?compression=none&write-nar-listing=1' $(nix-store --add /tmp/tree)
//	cp /tmp/c/<hash>.ls builder/listing/testdata/tree.ls
var treeFiles = map[string]string{
	`q"uote`: "x", `back\slash`: "x", "tab\there": "x", "ctl\x01x": "x", "nl\nx": "x",
	"é<>&": "x", "del\x7f": "x", "bad\xffutf": "x", "ls\u2028x": "x",
	"c\be": "x", "c\ve": "x", "c\fe": "x", "c\re": "x", "c\x1be": "x", "c\x1fe": "x",
	"B": "upper", "a": "lower", "empty": "", "dir/sub/deep": "nested\n",
	"lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug": "dbg",
	"lib/debug/.build-id/ab/short.debug":                                  "dbg2",
	"lib/debug/.build-id/cd/0123456789abcdef0123456789abcdef012345.debug": "dbg3",
	"lib/debug/.build-id/AB/0123456789abcdef0123456789abcdef012345.debug": "upper",
	"lib/debug/.build-id/ef/0123456789ABCDEF0123456789abcdef012345.debug": "upper",
}

func makeTree(t testing.TB, dir string) {
	t.Helper()
	for name, content := range treeFiles {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"empty-dir", "lib/debug/.build-id/ab/1123456789abcdef0123456789abcdef012345.debug"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link":     "dir/sub/deep",
		"dangling": "/does/not/exist",
		"lib/debug/.build-id/zz/0123456789abcdef0123456789abcdef012345.debug": "../ab/cdef0123456789abcdef0123456789abcdef01.debug",
		"lib/debug/.build-id/12": "ab",
	} {
		p := filepath.Join(dir, link)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if *writeTree != "" {
		makeTree(&testing.B{}, *writeTree) // Fatal would not stop a bare B; the tree is simple
		fmt.Println(*writeTree)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dump uses go-nix's dumper: nardump builds its tree with this package,
// which so cannot import it.
func dump(t *testing.T, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := nar.DumpPath(&b, path); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	makeTree(t, dir)
	narBytes := dump(t, dir)
	root, err := Read(bytes.NewReader(narBytes))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/tree.ls")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(JSON(root))); d != "" {
		t.Errorf("listing differs from Nix's (-nix +ours):\n%s", d)
	}
	checkOffsets(t, root, narBytes, dir, "")
}

// checkOffsets checks every regular file's narOffset against the NAR bytes.
func checkOffsets(t *testing.T, n *Node, narBytes []byte, dir, rel string) {
	t.Helper()
	switch n.Type {
	case nar.TypeRegular:
		want, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := narBytes[n.NAROffset : n.NAROffset+n.Size]; !bytes.Equal(got, want) {
			t.Errorf("%q: NAR bytes at narOffset %d are %q, want %q", rel, n.NAROffset, got, want)
		}
	case nar.TypeDirectory:
		for _, e := range n.Entries {
			checkOffsets(t, e.Node, narBytes, dir, rel+"/"+e.Name)
		}
	}
}

func TestRoots(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "single"), []byte("single"), 0o644)
	os.Symlink("/nonexistent", filepath.Join(dir, "lnk"))
	// What Nix 2.8 wrote for `nix-store --add` of each.
	for name, want := range map[string]string{
		"single": `{"version":1,"root":{"type":"regular","size":6,"narOffset":96}}`,
		"lnk":    `{"version":1,"root":{"type":"symlink","target":"/nonexistent"}}`,
	} {
		root, err := Read(bytes.NewReader(dump(t, filepath.Join(dir, name))))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, string(JSON(root))); d != "" {
			t.Errorf("%s (-nix +ours):\n%s", name, d)
		}
	}
}

// The listing must parse with go-nix's .ls reader, and agree with it.
func TestParsesWithGoNix(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	makeTree(t, dir)
	root, err := Read(bytes.NewReader(dump(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ls.ParseLS(bytes.NewReader(JSON(root)))
	if err != nil {
		t.Fatal(err)
	}
	n := got.Root.Entries["lib"].Entries["debug"].Entries[".build-id"].Entries["ab"].Entries["short.debug"]
	if n == nil || n.Size != 4 || n.Type != nar.TypeRegular {
		t.Errorf("go-nix sees short.debug as %+v", n)
	}
	if e := got.Root.Entries["nl\nx"]; e == nil {
		t.Errorf("go-nix lost the name with a newline")
	}
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        `"plain"`,
		`"\`:           `"\"\\"`,
		"\n\r\t":       `"\n\r\t"`,
		"\x00\x08\x1f": `"\u0000\u0008\u001f"`,
		"\x7f\xff<>&/": "\"\x7f\xff<>&/\"",
		"\u2028é":      "\"\u2028é\"",
	} {
		if got := string(AppendString(nil, in)); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
	}
}

// narStr encodes s as a NAR string: length, bytes, zero padding to 8.
func narStr(s string) string {
	var b strings.Builder
	n := len(s)
	for i := 0; i < 8; i++ {
		b.WriteByte(byte(n >> (8 * i)))
	}
	b.WriteString(s)
	for i := n; i%8 != 0; i++ {
		b.WriteByte(0)
	}
	return b.String()
}

func narOf(tokens ...string) []byte {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString(narStr(t))
	}
	return []byte(b.String())
}

func dirNAR(names ...string) []byte {
	toks := []string{"nix-archive-1", "(", "type", "directory"}
	for _, n := range names {
		toks = append(toks, "entry", "(", "name", n, "node", "(", "type", "regular", "contents", "x", ")", ")")
	}
	return narOf(append(toks, ")")...)
}

func TestMalformed(t *testing.T) {
	good := dirNAR("a", "b")
	if _, err := Read(bytes.NewReader(good)); err != nil {
		t.Fatalf("well-formed NAR rejected: %v", err)
	}
	for name, data := range map[string][]byte{
		"duplicate":                     dirNAR("a", "a"),
		"unsorted":                      dirNAR("b", "a"),
		"dot":                           dirNAR("a", "."),
		"dotdot":                        dirNAR("a", ".."),
		"empty name":                    dirNAR("", "a"),
		"slash in name":                 dirNAR("a/b"),
		"truncated":                     good[:len(good)-8],
		"truncated at a token boundary": good[:len(good)-16],
		"truncated after an entry":      good[:len(good)-16-16],
		"trailing data":                 append(append([]byte{}, good...), 0),
		"not a NAR":                     []byte("hello world, not a nar at all"),
		"bad type":                      narOf("nix-archive-1", "(", "type", "fifo", ")"),
	} {
		if _, err := Read(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A reader error is passed on.
	if _, err := Read(io.MultiReader(bytes.NewReader(good[:40]), errReader{})); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("reader error: got %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("boom") }

func TestLookup(t *testing.T) {
	root, err := Read(bytes.NewReader(dirNAR("a", "b")))
	if err != nil {
		t.Fatal(err)
	}
	if n := root.Lookup("/b"); n == nil || n.Type != nar.TypeRegular {
		t.Errorf("Lookup(/b) = %+v", n)
	}
	if root.Lookup("") != root || root.Lookup("c") != nil || root.Lookup("a/x") != nil {
		t.Errorf("Lookup misbehaves")
	}
}

// Parse reads what JSON writes, Nix's golden listing included, back into
// the same tree; and rejects what is not a listing, without echoing it.
func TestParse(t *testing.T) {
	golden, err := os.ReadFile("testdata/tree.ls")
	if err != nil {
		t.Fatal(err)
	}
	root, err := Parse(golden)
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json reads a name that is not UTF-8 with U+FFFD for it.
	if d := cmp.Diff(string(bytes.ToValidUTF8(golden, []byte("\uFFFD"))), string(JSON(root))); d != "" {
		t.Errorf("JSON(Parse(golden)) (-golden +got):\n%s", d)
	}
	// Another writer's key order and spacing: the same tree.
	other := `{"root": {"entries": {"b": {"type": "symlink", "target": "a"}, "a": {"narOffset": 200, "size": 3, "type": "regular", "executable": true}}, "type": "directory"}, "version": 1}`
	root, err = Parse([]byte(other))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"root":{"type":"directory","entries":{"a":{"type":"regular","size":3,"executable":true,"narOffset":200},"b":{"type":"symlink","target":"a"}}}}`
	if d := cmp.Diff(want, string(JSON(root))); d != "" {
		t.Errorf("reordered listing (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"SENTINEL-listing",
		`{"version":2,"root":{"type":"regular","size":1}}`,
		`{"version":1,"root":{"type":"fifo"}}`,
		`{"version":1,"root":{"type":"directory","entries":{"..":{"type":"regular","size":1}}}}`,
		`{"version":1,"root":{"type":"directory","entries":{"a/b":{"type":"regular","size":1}}}}`,
		`{"version":1,"root":{"type":"regular","size":1,"entries":{}}}`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "SENTINEL") {
			t.Errorf("error %v carries the file's content", err)
		}
	}
}
