// Package listing reads a NAR as a stream and produces the file listing
// that Nix writes next to a binary cache's narinfos with
// ?write-nar-listing=1: <hash part>.ls, the JSON of nar-accessor.cc's
// listNar, used by `nix store ls` and `nix store cat` on a binary cache.
//
// Format, as Nix 2.8 writes it (checked byte for byte against `nix copy`):
// compact JSON without a final newline, keys in this order,
//
//	{"version":1,"root":NODE}
//	regular:   {"type":"regular","size":N[,"executable":true][,"narOffset":N]}
//	symlink:   {"type":"symlink","target":"…"}
//	directory: {"type":"directory","entries":{"name":NODE,…}}   (byte order)
//
// where narOffset is the offset of the file's contents in the NAR. Strings
// escape only '"', '\\', and bytes below 0x20 (\n, \r, \t by name, the
// others as \u00xx); all other bytes, invalid UTF-8 included, are copied.
package listing

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nar/ls"
)

// Node is one file system object of a NAR.
type Node struct {
	Type       nar.NodeType
	Size       int64 // regular files
	Executable bool  // regular files
	NAROffset  int64 // regular files: where the contents start in the NAR
	Target     string
	Entries    []Entry // directories, in NAR (byte) order
}

// Entry is a named member of a directory.
type Entry struct {
	Name string
	Node *Node
}

// Lookup returns the node at a relative slash-separated path, not following
// symlinks, or nil.
func (n *Node) Lookup(p string) *Node {
	cur := n
	for _, name := range splitPath(p) {
		if cur.Type != nar.TypeDirectory {
			return nil
		}
		var next *Node
		for _, e := range cur.Entries {
			if e.Name == name {
				next = e.Node
				break
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return cur
}

func splitPath(p string) []string {
	var out []string
	for _, name := range strings.Split(p, "/") {
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// countingReader counts what the NAR parser has consumed: when go-nix's
// Reader hands out a regular file's header it has read exactly up to the
// contents, so the count is the contents' offset.
//
// It also turns io.EOF into io.ErrUnexpectedEOF. The parser never reads
// past the end of a whole NAR, so any end of input it meets is a
// truncation; but go-nix passes an io.EOF met at a token boundary on as is,
// and Next then reports it as the normal end of the archive.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// MaxDepth is the deepest nesting Read parses, in nodes from the root (1
// for a lone file), well above the 64 that Nix 2.34 unpacks. go-nix's
// parser holds the full path of every directory it is in, so memory grows
// with the square of the depth: the cap bounds it for a hostile NAR, at a
// few MiB.
const MaxDepth = 256

// Read parses the NAR on r, with go-nix's nar.Reader, into its tree of
// nodes, holding no file contents. It reads up to the end of the NAR's root
// node, then on to the end of r: data after the NAR is an error. It
// rejects what Nix would: unsorted or duplicate directory entries and the
// names "", "." and "..". It stops at a node nested deeper than MaxDepth.
func Read(r io.Reader) (*Node, error) {
	// go-nix's parser makes many small reads; buffer below the counter so
	// that the count stays that of the parser.
	br := bufio.NewReaderSize(r, 64<<10)
	cr := &countingReader{r: br}
	nr, err := nar.NewReader(cr)
	if err != nil {
		return nil, fmt.Errorf("read NAR: %w", err)
	}
	defer nr.Close()
	var root *Node
	// dirs are the directories from the root down to the last one entered:
	// the NAR is depth-first, so an entry's parent is the one at its depth
	// less one.
	var dirs []*Node
	for {
		h, err := nr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read NAR: %w", err)
		}
		n := &Node{Type: h.Type}
		switch h.Type {
		case nar.TypeRegular:
			n.Size, n.Executable, n.NAROffset = h.Size, h.Executable, cr.n
		case nar.TypeSymlink:
			n.Target = h.LinkTarget
		case nar.TypeDirectory:
		default:
			return nil, fmt.Errorf("read NAR: unknown node type %q", h.Type)
		}
		if root == nil {
			if h.Path != "/" {
				return nil, errors.New("read NAR: the first entry is not the root")
			}
			root = n
			if n.Type == nar.TypeDirectory {
				dirs = append(dirs, n)
			}
			continue
		}
		// go-nix joins names with path.Join, which cleans "." and ".." away:
		// such a name shows up as an entry that is not after its siblings.
		depth := strings.Count(h.Path, "/") + 1
		if h.Path == "/" || depth-1 > len(dirs) {
			return nil, errors.New("read NAR: an entry is not inside a directory")
		}
		if depth > MaxDepth {
			return nil, fmt.Errorf("read NAR: nested deeper than %d", MaxDepth)
		}
		dirs = dirs[:depth-1]
		parent := dirs[depth-2]
		// A copy: the base alone would keep the whole path in memory.
		name := strings.Clone(path.Base(h.Path))
		if k := len(parent.Entries); k > 0 && parent.Entries[k-1].Name >= name {
			return nil, fmt.Errorf("read NAR: an entry at depth %d is a duplicate, out of order, or named \"\", \".\" or \"..\"", depth)
		}
		parent.Entries = append(parent.Entries, Entry{Name: name, Node: n})
		if n.Type == nar.TypeDirectory {
			dirs = append(dirs, n)
		}
	}
	if root == nil {
		return nil, errors.New("read NAR: empty archive")
	}
	if extra, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("read NAR: %w", err)
	} else if extra > 0 {
		return nil, fmt.Errorf("read NAR: %d bytes of trailing data after the archive", extra)
	}
	return root, nil
}

// JSON returns the listing file of the NAR whose root is root, as Nix
// writes it.
func JSON(root *Node) []byte {
	b := []byte(`{"version":1,"root":`)
	b = root.appendJSON(b)
	return append(b, '}')
}

func (n *Node) appendJSON(b []byte) []byte {
	switch n.Type {
	case nar.TypeRegular:
		b = append(b, `{"type":"regular","size":`...)
		b = strconv.AppendInt(b, n.Size, 10)
		if n.Executable {
			b = append(b, `,"executable":true`...)
		}
		if n.NAROffset != 0 {
			b = append(b, `,"narOffset":`...)
			b = strconv.AppendInt(b, n.NAROffset, 10)
		}
	case nar.TypeSymlink:
		b = append(b, `{"type":"symlink","target":`...)
		b = AppendString(b, n.Target)
	case nar.TypeDirectory:
		b = append(b, `{"type":"directory","entries":{`...)
		for i, e := range n.Entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, e.Name)
			b = append(b, ':')
			b = e.Node.appendJSON(b)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendString appends s as a JSON string the way Nix 2.8's JSON writer
// does: see the package comment.
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Depth is the number of nodes on the longest chain from n down: 1 for a
// file, symlink or empty directory (the unit of nardump.Info.MaxDepth).
func (n *Node) Depth() int {
	d := 0
	for _, e := range n.Entries {
		d = max(d, e.Node.Depth())
	}
	return d + 1
}

// Parse reads a listing file (any JSON writer's, not only Nix's byte for
// byte) into its tree, entries in byte order as in a NAR. As encoding/json
// does, it reads a byte that is not UTF-8 as U+FFFD: compare two listings
// each through Parse. Errors say what is wrong, never what the file holds.
func Parse(data []byte) (*Node, error) {
	l, err := ls.ParseLS(bytes.NewReader(data))
	if err != nil {
		return nil, errors.New("not a NAR listing")
	}
	if l.Version != 1 {
		return nil, errors.New("not a NAR listing of version 1")
	}
	return fromLS(&l.Root)
}

func fromLS(n *ls.Node) (*Node, error) {
	out := &Node{Type: n.Type, Size: n.Size, Executable: n.Executable, NAROffset: n.NAROffset, Target: n.LinkTarget}
	switch n.Type {
	case nar.TypeRegular, nar.TypeSymlink:
		if n.Entries != nil {
			return nil, errors.New("a listing's file has entries")
		}
	case nar.TypeDirectory:
		for _, name := range slices.Sorted(maps.Keys(n.Entries)) {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
				return nil, errors.New("a listing entry's name is not a file name")
			}
			c, err := fromLS(n.Entries[name])
			if err != nil {
				return nil, err
			}
			out.Entries = append(out.Entries, Entry{Name: name, Node: c})
		}
	default:
		return nil, errors.New("a listing node has no valid type")
	}
	return out, nil
}
