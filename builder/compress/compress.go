// Package compress maps the compression names of Nix binary caches (the
// narinfo Compression field) to streaming encoders and decoders.
package compress

import (
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

// Levels returns the accepted level range of a method; DefaultLevel means
// the method's default.
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

// DefaultLevel asks for the method's default level.
const DefaultLevel = -1

// CheckLevel reports whether level is valid for m.
func (m Method) CheckLevel(level int) error {
	if level == DefaultLevel {
		return nil
	}
	lo, hi := m.Levels()
	if m == None || level < lo || level > hi {
		if m == None {
			return fmt.Errorf("compression none takes no level (got %d)", level)
		}
		return fmt.Errorf("compression %s: level %d out of range %d..%d", m, level, lo, hi)
	}
	return nil
}

// Options tune an encoder.
type Options struct {
	Level int // DefaultLevel or within Levels()
	// Threads bounds the goroutines one encoder may use for one stream.
	// The output does not depend on it.
	Threads int
}

// xzDictCap follows xz(1)'s presets: -0 .. -9.
var xzDictCap = [10]int{256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20}

// NewWriter returns an encoder writing to w. Close flushes it; it does not
// close w.
func NewWriter(w io.Writer, m Method, o Options) (io.WriteCloser, error) {
	if err := m.CheckLevel(o.Level); err != nil {
		return nil, err
	}
	threads := o.Threads
	if threads < 1 {
		threads = 1
	}
	switch m {
	case None:
		return nopCloser{w}, nil
	case Zstd:
		level := zstd.SpeedDefault
		if o.Level != DefaultLevel {
			level = zstd.EncoderLevelFromZstd(o.Level)
		}
		return zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(threads))
	case XZ:
		// ulikunitz/xz is much slower with large dictionaries for little gain
		// on NAR data (DESIGN.md §4): default to xz -1's 1 MiB.
		dict := xzDictCap[1]
		if o.Level != DefaultLevel {
			dict = xzDictCap[o.Level]
		}
		return xz.WriterConfig{DictCap: dict}.NewWriter(w)
	case Bzip2:
		level := 9 // Nix's and bzip2(1)'s default
		if o.Level != DefaultLevel {
			level = o.Level
		}
		return bzip2.NewWriter(w, &bzip2.WriterConfig{Level: level})
	}
	return nil, fmt.Errorf("unsupported compression %q", m)
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

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
