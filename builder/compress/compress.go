// Package compress maps the compression names of Nix binary caches (the
// narinfo Compression field) to streaming encoders and decoders.
package compress

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Method is a narinfo Compression value.
type Method string

// The methods Nix substitutes from.
const (
	None  Method = "none"
	XZ    Method = "xz"
	Bzip2 Method = "bzip2"
	Zstd  Method = "zstd"
)

// Methods lists every supported method, in the order help texts show them.
var Methods = []Method{None, XZ, Bzip2, Zstd}

// Parse returns the method for a narinfo Compression value.
func Parse(s string) (Method, error) {
	for _, m := range Methods {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unsupported compression %q (supported: %s)", s, strings.Join(names, ", "))
}

// Ext is the file name extension Nix uses for NARs of this method.
func (m Method) Ext() string {
	switch m {
	case XZ:
		return ".xz"
	case Bzip2:
		return ".bz2"
	case Zstd:
		return ".zst"
	}
	return ""
}

// Levels returns the range of levels a method accepts, as its tool
// (xz(1), zstd(1), bzip2(1)) numbers them.
func (m Method) Levels() (lo, hi int) {
	switch m {
	case XZ:
		return 0, 9
	case Bzip2:
		return 1, 9
	case Zstd:
		return 1, 22
	}
	return 0, 0
}

// DefaultLevel, the zero value of a Level field, asks for the method's
// default level.
const DefaultLevel = 0

// LevelZero asks for level 0 (xz -0), which the zero value cannot say: it
// is DefaultLevel.
const LevelZero = -1

// Level returns the value of a Level field for level n as the method's
// tool numbers it: LevelZero for 0, else n.
func Level(n int) int {
	if n == 0 {
		return LevelZero
	}
	return n
}

// toolLevel returns the level the method's tool numbers as level, and
// false for DefaultLevel.
func toolLevel(level int) (int, bool) {
	switch level {
	case DefaultLevel:
		return 0, false
	case LevelZero:
		return 0, true
	}
	return level, true
}

// CheckLevel reports whether level is valid for m.
func (m Method) CheckLevel(level int) error {
	n, set := toolLevel(level)
	if !set {
		return nil
	}
	if m == None {
		return fmt.Errorf("compression none takes no level (got %d)", n)
	}
	if lo, hi := m.Levels(); n < lo || n > hi {
		return fmt.Errorf("compression %s: level %d out of range %d..%d", m, n, lo, hi)
	}
	return nil
}

// Options tune an encoder. The zero value of each field is its default.
type Options struct {
	// Level is DefaultLevel (0), LevelZero or another level in Levels().
	Level int
	// Threads bounds the chunks of one stream compressed at once (0: one).
	// The output does not depend on it.
	Threads int
	// XZProgram, when set, is an xz(1) (liblzma) that compresses each xz
	// chunk of XZProgramMinSize or more, at XZProgramLevel unless Level is
	// set: several times faster than the pure Go encoder for the same
	// ratio. The output then depends on that program's version.
	XZProgram string

	// chunkSize overrides the chunk size, for this package's tests.
	chunkSize int
}

// XZProgramLevel is the preset an external xz compresses with by default,
// chosen by measurement on NAR data (docs/benchmarks.md): -5 has -6's 8 MiB
// dictionary with a shorter nice length, about 1.5x as fast for 1.6% more
// output; with XZProgramChunkSize chunks it writes 1.025x what a single
// xz -6 stream (and so nix copy) writes on BIG.
const XZProgramLevel = 5

// xzDictCap follows xz(1)'s presets: -0 .. -9.
var xzDictCap = [10]int{256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20}

// NewWriter returns an encoder writing to w, with an Encoder of its own;
// a run that compresses many streams shares one Encoder instead. Close
// flushes it; it does not close w, and w is written from another goroutine
// until Close returns.
func NewWriter(w io.Writer, m Method, o Options) (io.WriteCloser, error) {
	e, err := NewEncoder(m, o)
	if err != nil {
		return nil, err
	}
	return e.NewWriter(w, 0), nil
}

// NewReader returns a decoder reading from r.
func NewReader(r io.Reader, m Method) (io.ReadCloser, error) {
	switch m {
	case None:
		return io.NopCloser(r), nil
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case XZ:
		// The xz decoder reads its input a byte at a time: one system
		// call per byte from a file or pipe, unless buffered.
		if _, ok := r.(io.ByteReader); !ok {
			r = bufio.NewReaderSize(r, 64<<10)
		}
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(d), nil
	case Bzip2:
		return bzip2.NewReader(r, nil)
	}
	return nil, fmt.Errorf("unsupported compression %q", m)
}
