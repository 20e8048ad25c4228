package cache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// writeNAR dumps, hashes and compresses p in one pass into a new file that
// is published under its content-addressed name once complete and checked,
// and writes its listing and debuginfo entries. A NAR known to fit in one
// chunk goes the direct way: dumped into a buffer, compressed in one call
// and written at once, with no goroutine or pipe of its own.
func (r *run) writeNAR(ctx context.Context, p closure.Path) (*narinfo.NarInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.emit(Event{Kind: Started, Path: p.StorePath})
	tmp, err := r.d.Create("nar")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Abort()
		}
	}()

	narHash, fileHash := newHash(), newHash()
	var tree *listing.Node
	if p.NarSize > 0 && p.NarSize <= uint64(r.enc.ChunkSize()) {
		tree, err = r.compressSmall(p, tmp.File, narHash, fileHash)
	} else {
		tree, err = r.compressStream(p, tmp.File, narHash, fileHash)
	}
	if err != nil {
		return nil, err
	}
	if r.o.Compression == compress.None {
		fileHash = narHash // the file is the NAR: hashed once
	}
	ni, err := r.narInfo(p, narHash, fileHash)
	if err != nil {
		return nil, err
	}
	url := ni.URL
	if r.o.Sign != nil {
		if err := r.o.Sign(ni); err != nil {
			return nil, fmt.Errorf("%s: sign: %w", p.StorePath, err)
		}
	}
	err = tmp.Publish(strings.TrimPrefix(url, "nar/"), 0o644)
	tmp = nil
	if err != nil {
		return nil, fmt.Errorf("%s: write NAR: %w", p.StorePath, err)
	}
	if tree != nil {
		if err := r.writeIndex(p.StorePath, url, tree); err != nil {
			return nil, err
		}
	}
	return ni, nil
}

// compressSmall dumps p into one pooled buffer and compresses it in one
// call: the same bytes as compressStream, since the NAR is one chunk.
func (r *run) compressSmall(p closure.Path, f *os.File, narHash, fileHash *countingHash) (*listing.Node, error) {
	nar, tree, err := r.appendNAR(r.enc.Buffer(int(p.NarSize)), p.StorePath)
	defer r.enc.Release(nar)
	if err != nil {
		return nil, err
	}
	narHash.Write(nar)
	r.emit(Event{Kind: Progress, Path: p.StorePath, NarBytes: uint64(len(nar))})
	if uint64(len(nar)) > uint64(r.enc.ChunkSize()) {
		// Changed since Nix recorded it: narInfo reports the mismatch.
		return tree, nil
	}
	out := nar
	if r.o.Compression != compress.None {
		if out, err = r.enc.Append(nil, nar); err != nil {
			return nil, fmt.Errorf("%s: compress: %w", p.StorePath, err)
		}
		defer r.enc.Release(out)
		fileHash.Write(out)
	}
	if _, err := f.Write(out); err != nil {
		return nil, fmt.Errorf("%s: write NAR: %w", p.StorePath, err)
	}
	return tree, nil
}

// compressStream streams p's NAR through the chunked encoder into f.
func (r *run) compressStream(p closure.Path, f *os.File, narHash, fileHash *countingHash) (*listing.Node, error) {
	fileOut := io.MultiWriter(f, fileHash)
	if r.o.Compression == compress.None {
		fileOut = f
	}
	// No larger than the NAR: many small paths would each allocate 1 MiB.
	fileBuf := bufio.NewWriterSize(fileOut, int(min(1<<20, max(4<<10, p.NarSize))))
	enc := r.enc.NewWriter(fileBuf, int64(p.NarSize))
	pw := &progressWriter{r: r, path: p.StorePath}
	tree, err := r.dumpNAR(io.MultiWriter(narHash, enc, pw), p.StorePath)
	if err != nil {
		enc.Close()
		return nil, err
	}
	pw.flush()
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: compress: %w", p.StorePath, err)
	}
	if err := fileBuf.Flush(); err != nil {
		return nil, fmt.Errorf("%s: write NAR: %w", p.StorePath, err)
	}
	return tree, nil
}

// progressWriter reports the NAR bytes of a large path as they stream.
type progressWriter struct {
	r       *run
	path    string
	pending uint64
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.pending += uint64(len(p))
	if w.pending >= progressStep {
		w.flush()
	}
	return len(p), nil
}

func (w *progressWriter) flush() {
	if w.pending > 0 {
		w.r.emit(Event{Kind: Progress, Path: w.path, NarBytes: w.pending})
		w.pending = 0
	}
}
