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
	if ni.NarHash == nil || ni.NarSize == 0 {
		return errors.New("no NarHash or NarSize to check the NAR against")
	}
	m, err := compress.Parse(ni.Compression)
	if err != nil {
		return err
	}
	file := newCounter(ni.FileHash)
	in := io.Reader(ctxReader{ctx, r})
	if ni.FileSize > 0 {
		in = io.LimitReader(in, int64(ni.FileSize)+1)
	}
	in = io.TeeReader(in, file)
	dec, err := compress.NewReader(in, m)
	if err != nil {
		return fmt.Errorf("does not decompress as %s: %w", m, err)
	}
	defer dec.Close()
	nar := newCounter(ni.NarHash)
	// One byte past NarSize tells a longer NAR, and no more is read.
	if _, err := io.Copy(nar, io.LimitReader(dec, int64(ni.NarSize)+1)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("does not decompress as %s: %w", m, err)
	}
	var errs []error
	if nar.n != ni.NarSize {
		if nar.n > ni.NarSize {
			errs = append(errs, fmt.Errorf("NarSize is %d, the NAR has more bytes", ni.NarSize))
		} else {
			errs = append(errs, fmt.Errorf("NarSize is %d, the NAR has %d bytes", ni.NarSize, nar.n))
		}
	} else if err := nar.check("NarHash", ni.NarHash); err != nil {
		errs = append(errs, err)
	}
	// The file hash covers the whole file, whatever the decoder read.
	if _, err := io.Copy(io.Discard, in); err != nil {
		return err
	}
	if ni.FileSize > 0 && file.n != ni.FileSize {
		if file.n > ni.FileSize {
			errs = append(errs, fmt.Errorf("FileSize is %d, the file has more bytes", ni.FileSize))
		} else {
			errs = append(errs, fmt.Errorf("FileSize is %d, the file has %d bytes", ni.FileSize, file.n))
		}
	} else if ni.FileHash != nil {
		if err := file.check("FileHash", ni.FileHash); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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

func (c *counter) check(field string, want *nixhash.HashWithEncoding) error {
	got := c.h.Sum(nil)
	if bytes.Equal(got, want.Digest()) {
		return nil
	}
	h, err := nixhash.NewHash(want.Algo(), got)
	if err != nil {
		return fmt.Errorf("%s does not match", field)
	}
	return fmt.Errorf("%s is %s, the content hashes to %s", field, want.Format(nixhash.NixBase32, true), h.Format(nixhash.NixBase32, true))
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
