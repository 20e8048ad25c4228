// Package narcheck checks a NAR file of a binary cache against what its
// narinfo says of it: FileSize bytes hashing to FileHash, which decompress
// (as Compression says) to NarSize bytes hashing to NarHash. It reads the
// file once, streaming, and never more than the narinfo's sizes allow, so
// a decompression bomb costs no more than an honest NAR of the size claimed.
package narcheck

import (
	"bytes"
	"context"
	_ "crypto/md5" // the hash algorithms a narinfo may name
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// Check reads the NAR file from r and returns an error, naming each
// mismatch (never the content), unless it is what ni says. NarHash and
// NarSize are required; FileHash and FileSize are checked when given.
func Check(ctx context.Context, r io.Reader, ni *narinfo.NarInfo) error {
	_, err := Read(ctx, r, ni, nil)
	return err
}

// Sizes are the bytes read of a NAR file and, decompressed, of its NAR.
type Sizes struct{ File, Nar uint64 }

// Read checks the NAR file from r as Check does and, unless parse is nil,
// gives parse the NAR as it is decompressed (at most a byte past NarSize).
// The error parse returns is reported as the NAR not being well-formed,
// unless its decompression failed or it is longer than NarSize, which
// tells more. Each problem is one error of the errors.Join returned.
func Read(ctx context.Context, r io.Reader, ni *narinfo.NarInfo, parse func(nar io.Reader) error) (Sizes, error) {
	if ni.NarHash == nil || ni.NarSize == 0 {
		return Sizes{}, errors.New("no NarHash or NarSize to check the NAR against")
	}
	m, err := compress.Parse(ni.Compression)
	if err != nil {
		return Sizes{}, err
	}
	file := newCounter(ni.FileHash)
	in := io.Reader(ctxReader{ctx, r})
	if ni.FileSize > 0 {
		in = io.LimitReader(in, int64(ni.FileSize)+1)
	}
	in = io.TeeReader(in, file)
	nar := newCounter(ni.NarHash)
	var errs []error
	if parseErr, err := readNAR(in, m, ni.NarSize, nar, parse); err != nil {
		if ctx.Err() != nil {
			return Sizes{}, ctx.Err()
		}
		errs = append(errs, err)
	} else if nar.n > ni.NarSize {
		errs = append(errs, fmt.Errorf("NarSize is %d, the NAR has more bytes", ni.NarSize))
	} else {
		if parseErr != nil {
			errs = append(errs, fmt.Errorf("not a well-formed NAR: %w", parseErr))
		}
		if nar.n != ni.NarSize {
			errs = append(errs, fmt.Errorf("NarSize is %d, the NAR has %d bytes", ni.NarSize, nar.n))
		} else if err := nar.check("NarHash", "the NAR", ni.NarHash); err != nil {
			errs = append(errs, err)
		}
	}
	// The file hash covers the whole file, whatever the decoder read.
	if _, err := io.Copy(io.Discard, in); err != nil {
		if ctx.Err() != nil {
			return Sizes{}, ctx.Err()
		}
		return Sizes{}, err
	}
	if ni.FileSize > 0 && file.n != ni.FileSize {
		if file.n > ni.FileSize {
			errs = append(errs, fmt.Errorf("FileSize is %d, the file has more bytes", ni.FileSize))
		} else {
			errs = append(errs, fmt.Errorf("FileSize is %d, the file has %d bytes", ni.FileSize, file.n))
		}
	} else if ni.FileHash != nil {
		if err := file.check("FileHash", "the file", ni.FileHash); err != nil {
			errs = append(errs, err)
		}
	}
	return Sizes{File: file.n, Nar: nar.n}, errors.Join(errs...)
}

// readNAR decompresses in (m) into nar, no further than a byte past
// narSize, which tells a longer NAR, through parse if not nil; err is the
// decompressor's.
func readNAR(in io.Reader, m compress.Method, narSize uint64, nar *counter, parse func(io.Reader) error) (parseErr, err error) {
	dec, err := compress.NewReader(in, m)
	if err != nil {
		return nil, fmt.Errorf("does not decompress as %s: %w", m, err)
	}
	defer dec.Close()
	de := &errReader{r: dec}
	out := io.TeeReader(io.LimitReader(de, int64(narSize)+1), nar)
	if parse != nil {
		parseErr = parse(out)
	}
	// Hash the rest, past a malformed part.
	if _, err := io.Copy(io.Discard, out); err != nil && de.err == nil {
		de.err = err
	}
	if de.err != nil {
		return nil, fmt.Errorf("does not decompress as %s: %w", m, de.err)
	}
	return parseErr, nil
}

// errReader remembers the error its reader returned, to tell a
// decompression error from a malformed NAR.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// counter hashes, in the algorithm of a narinfo's hash, and counts what is
// written to it.
type counter struct {
	h hash.Hash
	n uint64
}

func newCounter(want *nixhash.HashWithEncoding) *counter {
	algo := nixhash.SHA256
	if want != nil {
		algo = want.Algo()
	}
	return &counter{h: algo.Func().New()}
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return c.h.Write(p)
}

func (c *counter) check(field, what string, want *nixhash.HashWithEncoding) error {
	got := c.h.Sum(nil)
	if bytes.Equal(got, want.Digest()) {
		return nil
	}
	h, err := nixhash.NewHash(want.Algo(), got)
	if err != nil {
		return fmt.Errorf("%s does not match", field)
	}
	return fmt.Errorf("%s is %s, %s hashes to %s", field, want.Format(nixhash.NixBase32, true), what, h.Format(nixhash.NixBase32, true))
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
