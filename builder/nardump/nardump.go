// Package nardump serialises a store path to the NAR format, byte-identical
// to `nix-store --dump`.
//
// A Dumper walks the tree with directory file descriptors and raw system
// calls, writing the NAR through one reused buffer: no goroutine, no
// allocation per file, and file contents are read straight into the output
// buffer. Sparse files are read with SEEK_DATA/SEEK_HOLE, their holes
// written as zeros without reading them. The same walk can also return the
// file tree (as listing.Node, with NAR offsets) and the nesting depth.
//
// go-nix's DumpPath, which this replaces, stays the reference of the tests
// (beside nix-store itself); note that its writer fails on names starting
// with "..", such as "..data", which Nix takes.
//
// Linux only (getdents64, openat, O_PATH, SEEK_DATA): the walk makes four
// system calls per file (openat, fstat, read, close) and four per
// directory (openat, getdents64 twice, close).
package nardump

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
)

// MaxNixDepth is the deepest NAR that Nix >= 2.34 accepts, in the unit of
// Info.MaxDepth. Nix's archive.cc (narMaxDepth = 64) gives the root depth
// 0, adds 1 per directory entry, and refuses any node, file or directory,
// at depth >= 64 ("bad archive: NAR directory nesting exceeds maximum depth
// of 64" when reading, "path … exceeds maximum NAR directory depth of 64"
// when dumping); so a NAR is accepted iff Info.MaxDepth <= MaxNixDepth.
const MaxNixDepth = 64

// DefaultBufferSize is the size of a Dumper's output buffer, and so of most
// writes it makes: large enough that a compressor and a hasher work in
// bulk, small enough to stay in cache.
const DefaultBufferSize = 256 << 10

// minBufferSize fits every token (names are at most 255 bytes, symlink
// targets at most 4095) after a flush.
const minBufferSize = 8 << 10

// Info describes a dumped NAR.
type Info struct {
	// Size is the number of bytes of NAR written (the narinfo's NarSize).
	Size int64
	// MaxDepth is the number of nodes on the longest chain from the root
	// down: 1 for a lone file, symlink or empty directory, 2 for a
	// directory of files, and so on. See MaxNixDepth.
	MaxDepth int
	// Tree is the file tree, as listing.Read would read it from the NAR;
	// nil unless Dumper.Tree is set.
	Tree *listing.Node
}

// Dumper serialises file system trees to NAR. Its zero value is ready to
// use. A Dumper keeps its buffers from one Dump to the next, so reuse one
// (per goroutine: it is not safe for concurrent use) for many paths.
type Dumper struct {
	// Tree asks Dump to return the file tree in Info.Tree.
	Tree bool
	// BufferSize is the size of the output buffer (DefaultBufferSize if
	// 0). Dump writes to w in chunks of this size, then the rest.
	BufferSize int

	w       io.Writer
	own     []byte // Dump's buffer
	buf     []byte // output not yet written to w, or Append's slice
	grow    bool   // Append: grow buf rather than flush it
	flushed int64  // bytes written to w so far (in Append, minus those before the NAR)
	err     error  // first error from w
	depth   int    // Info.MaxDepth so far

	names  []byte  // NUL-terminated names of the directories being walked
	ents   []entry // their entries, a range per directory, each range sorted
	chain  []entry // the entries from the root down to the current node
	dirent []byte  // getdents buffer
	link   []byte  // readlink buffer
	st     statBuf
	slab   []listing.Node // Tree nodes, allocated in bulk
}

// entry is a name in Dumper.names.
type entry struct {
	off  int
	len  int
	kind uint8 // the dirent type
}

// dumpers serve the package-level Dump, whose callers have no Dumper of
// their own: a pool keeps its buffers from one call to the next.
var dumpers = sync.Pool{New: func() any { return new(Dumper) }}

// Dump writes the NAR serialisation of the file system object at path to w.
func Dump(w io.Writer, path string) error {
	d := dumpers.Get().(*Dumper)
	defer dumpers.Put(d)
	_, err := d.Dump(w, path)
	return err
}

// Dump writes the NAR serialisation of the file system object at path to w,
// in writes of BufferSize bytes but the last. Errors name the file and
// what went wrong: a special file (FIFO, socket, device), one that changed
// size while it was read, a system call's error (as an *fs.PathError), or
// w's error. On error, part of the NAR may have been written.
func (d *Dumper) Dump(w io.Writer, path string) (Info, error) {
	size := max(d.BufferSize, minBufferSize)
	if d.BufferSize == 0 {
		size = DefaultBufferSize
	}
	if cap(d.own) != size {
		d.own = make([]byte, 0, size)
	}
	d.w, d.buf, d.flushed, d.grow = w, d.own[:0], 0, false
	defer func() { d.w = nil }()
	root, err := d.dump(path)
	if err == nil {
		d.flush()
		if err = d.err; err != nil {
			err = fmt.Errorf("dump %s: %w", path, err)
		}
	}
	if err != nil {
		return Info{}, err
	}
	return Info{Size: d.flushed, MaxDepth: d.depth, Tree: root}, nil
}

// Append appends the NAR serialisation of the file system object at path
// to dst and returns the extended slice, growing it as needed: for callers
// that hold a whole NAR anyway, it saves a copy through the Dumper's
// buffer. Info.Size is the length of the NAR, Tree's offsets are from its
// start. Errors are Dump's.
func (d *Dumper) Append(dst []byte, path string) ([]byte, Info, error) {
	d.buf, d.flushed, d.grow = dst, -int64(len(dst)), true
	root, err := d.dump(path)
	out, size := d.buf, d.offset()
	d.buf = nil // the caller's
	if err != nil {
		return out, Info{}, err
	}
	return out, Info{Size: size, MaxDepth: d.depth, Tree: root}, nil
}

// dump writes the NAR of path into the buffer.
func (d *Dumper) dump(path string) (*listing.Node, error) {
	d.err, d.depth = nil, 0
	d.names, d.ents, d.chain = d.names[:0], d.ents[:0], d.chain[:0]
	// Keep no tree: the caller has it.
	defer func() { d.slab = nil }()
	if path == "" || strings.IndexByte(path, 0) >= 0 {
		return nil, fmt.Errorf("dump %q: not a path", path)
	}
	d.raw(tokMagic)
	// The root is looked up by its path from the working directory, as an
	// entry of unknown type.
	clean := filepath.Clean(path)
	d.names = append(append(d.names, clean...), 0)
	root, err := d.node(atFDCWD, entry{len: len(clean), kind: dtUnknown}, 1)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", path, err)
	}
	return root, nil
}

// offset is where the next byte goes in the NAR.
func (d *Dumper) offset() int64 { return d.flushed + int64(len(d.buf)) }

// flush writes out the buffer. After an error from w it discards output:
// Dump returns that error at the end.
func (d *Dumper) flush() {
	if d.err == nil && len(d.buf) > 0 {
		_, d.err = d.w.Write(d.buf)
	}
	d.flushed += int64(len(d.buf))
	d.buf = d.buf[:0]
}

// room makes room for n bytes, n <= minBufferSize.
func (d *Dumper) room(n int) {
	if cap(d.buf)-len(d.buf) < n {
		if d.grow {
			d.buf = slices.Grow(d.buf, n)
		} else {
			d.flush()
		}
	}
}

// free returns free space at the end of the buffer, of want bytes or less
// but at least one: in Append's buffer, it grows to want.
func (d *Dumper) free(want int64) []byte {
	if int64(cap(d.buf)-len(d.buf)) < want {
		if d.grow {
			d.buf = slices.Grow(d.buf, int(want))
		} else if len(d.buf) == cap(d.buf) {
			d.flush()
		}
	}
	f := d.buf[len(d.buf):cap(d.buf)]
	return f[:min(int64(len(f)), want)]
}

// raw writes pre-encoded tokens.
func (d *Dumper) raw(s string) {
	d.room(len(s))
	d.buf = append(d.buf, s...)
}

// str writes one NAR string: its length as 64-bit little endian, its
// bytes, and zeros up to a multiple of 8.
func (d *Dumper) str(s []byte) {
	d.room(8 + len(s) + 7)
	d.buf = appendUint64(d.buf, uint64(len(s)))
	d.buf = append(d.buf, s...)
	d.buf = append(d.buf, zeros8[:pad(int64(len(s)))]...)
}

// zeros writes n zero bytes.
func (d *Dumper) zeros(n int64) {
	for n > 0 {
		k := len(d.free(n))
		l := len(d.buf)
		d.buf = d.buf[:l+k]
		clear(d.buf[l:])
		n -= int64(k)
	}
}

const zeros8 = "\x00\x00\x00\x00\x00\x00\x00\x00"

func pad(n int64) int { return int(-n & 7) }

func appendUint64(b []byte, v uint64) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

// Runs of tokens, pre-encoded as NAR strings (checked by TestTokens).
const (
	tokMagic         = "\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1\x00\x00\x00"
	tokOpen          = "\x01\x00\x00\x00\x00\x00\x00\x00(\x00\x00\x00\x00\x00\x00\x00"
	tokClose         = "\x01\x00\x00\x00\x00\x00\x00\x00)\x00\x00\x00\x00\x00\x00\x00"
	tokTypeRegular   = "\x04\x00\x00\x00\x00\x00\x00\x00type\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00regular\x00"
	tokExecutable    = "\x0a\x00\x00\x00\x00\x00\x00\x00executable\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	tokContents      = "\x08\x00\x00\x00\x00\x00\x00\x00contents"
	tokTypeDirectory = "\x04\x00\x00\x00\x00\x00\x00\x00type\x00\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00directory\x00\x00\x00\x00\x00\x00\x00"
	tokTypeSymlink   = "\x04\x00\x00\x00\x00\x00\x00\x00type\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00symlink\x00\x06\x00\x00\x00\x00\x00\x00\x00target\x00\x00"
	tokEntryOpenName = "\x05\x00\x00\x00\x00\x00\x00\x00entry\x00\x00\x00" + tokOpen + "\x04\x00\x00\x00\x00\x00\x00\x00name\x00\x00\x00\x00"
	tokNode          = "\x04\x00\x00\x00\x00\x00\x00\x00node\x00\x00\x00\x00"
)
