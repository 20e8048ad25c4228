package nardump_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

// FuzzDump builds a file tree from the input and checks the Dumper's NAR
// against go-nix's DumpPath byte for byte, and its tree against the one the
// listing package reads from that NAR.
//
//	go test ./builder/nardump -run '^$' -fuzz FuzzDump -fuzztime 1m
func FuzzDump(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{1, '.', '.', '/', 'x'})
	f.Add([]byte{2, 0, 1, 9, 3, 3, 4, 0, 2, 7, 200, 5, 6, 1, 2, 3, 6, 9, 7, 4, 12, 200, 100})
	f.Add([]byte{3, 3, 0, 3, 1, 3, 2, 3, 3, 0, 5, 0, 4, 4, 1, 17, 250, 2, 2, 255, 255, 7, 9, 31, 9})
	f.Add(bytes.Repeat([]byte{3, 1}, 80))
	var d nardump.Dumper // reused, as callers do
	f.Fuzz(func(t *testing.T, data []byte) {
		root := filepath.Join(t.TempDir(), "root")
		g := &gen{t: t, data: data}
		g.build(root)
		var want bytes.Buffer
		if err := nar.DumpPath(&want, root); err != nil {
			t.Fatalf("go-nix: %v", err)
		}
		wantTree, err := listing.Read(bytes.NewReader(want.Bytes()))
		if err != nil {
			t.Fatalf("listing: %v", err)
		}
		d.Tree = len(data) == 0 || data[0]&0x80 == 0
		d.BufferSize = 0
		if len(data) > 0 && data[0]&0x40 != 0 {
			d.BufferSize = 1 // the smallest: many flushes
		}
		var got []byte
		var info nardump.Info
		if len(data) > 0 && data[0]&0x20 != 0 {
			got, info, err = d.Append(nil, root)
		} else {
			var b bytes.Buffer
			info, err = d.Dump(&b, root)
			got = b.Bytes()
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			i := 0
			for i < len(got) && i < want.Len() && got[i] == want.Bytes()[i] {
				i++
			}
			t.Fatalf("NARs differ at byte %d of %d/%d:\nnardump: %q\ngo-nix:  %q", i, len(got), want.Len(), around(got, i), around(want.Bytes(), i))
		}
		if info.Size != int64(want.Len()) {
			t.Errorf("Info.Size %d, want %d", info.Size, want.Len())
		}
		if d.Tree {
			sameTree(t, wantTree, info.Tree)
		} else if info.Tree != nil {
			t.Errorf("a tree, unasked")
		}
		if w := depth(wantTree); info.MaxDepth != w {
			t.Errorf("MaxDepth %d, want %d", info.MaxDepth, w)
		}
	})
}

// gen turns fuzz input into a file tree.
type gen struct {
	t     *testing.T
	data  []byte
	files int
	bytes int64 // of file contents, holes included
}

func (g *gen) next() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

// Bytes that sort in interesting ways, and that JSON and NAR must carry.
const alphabet = "aAb.-_~ 0\xff\xc3\xa9\x01\n\\\"é"

func (g *gen) name() string {
	n := 1 + int(g.next()%4)
	if g.next() == 255 {
		n = 255
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[int(g.next())%len(alphabet)]
	}
	// go-nix's writer takes a name that starts with ".." for a way up
	// (the edge tests check such names against Nix).
	if b[0] == '.' && (n == 1 || b[1] == '.') {
		b[0] = 'x'
	}
	return string(b)
}

func (g *gen) content(size int) []byte {
	g.bytes += int64(size)
	b := make([]byte, size)
	seed := g.next()
	for i := range b {
		b[i] = byte(i) * seed
	}
	return b
}

func (g *gen) build(root string) {
	must := func(err error) {
		if err != nil {
			g.t.Fatal(err)
		}
	}
	switch g.next() % 8 {
	case 0:
		must(os.WriteFile(root, g.content(int(g.next())*37), 0o644))
		return
	case 1:
		must(os.Symlink(g.name()+"/"+g.name(), root))
		return
	}
	must(os.Mkdir(root, 0o755))
	stack := []string{root}
	// Bounded, to keep the executions fast: a large tree finds no more.
	for len(g.data) > 0 && g.files < 300 && g.bytes < 8<<20 {
		op, cur := g.next()%8, stack[len(stack)-1]
		if op == 4 {
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		p := filepath.Join(cur, g.name())
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		g.files++
		switch op {
		case 0, 1: // small file
			mode := os.FileMode(0o644)
			if g.next()&1 != 0 {
				mode = 0o755
			}
			must(os.WriteFile(p, g.content(int(g.next())), 0o644))
			must(os.Chmod(p, mode))
		case 2: // a file around the buffer sizes
			must(os.WriteFile(p, g.content(int(g.next())<<10+int(g.next())), 0o644))
		case 3:
			if len(stack) < 80 {
				must(os.Mkdir(p, 0o755))
				stack = append(stack, p)
			}
		case 5:
			must(os.Symlink(g.name()+"/../"+g.name(), p))
		case 6:
			must(os.Mkdir(p, 0o700))
		case 7: // sparse, with holes worth seeking over
			f, err := os.Create(p)
			must(err)
			size := int64(g.next())<<12 + 64<<10
			g.bytes += size
			must(f.Truncate(size))
			for range g.next() % 4 {
				_, err := f.WriteAt(g.content(int(g.next())*16), int64(g.next())<<11)
				must(err)
			}
			must(f.Close())
		}
	}
}
