package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/debuginfo"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

// indexer reads the NAR being written, in its own goroutine through a pipe,
// for the listing and the debug info index (Options.NarListing,
// Options.IndexDebugInfo): the NAR is never held, only its file tree.
type indexer struct {
	pw   *io.PipeWriter
	done chan struct{}
	root *listing.Node
	err  error
}

// startIndex returns nil when neither a listing nor a debug info index is
// wanted.
func (r *run) startIndex() *indexer {
	if !r.o.NarListing && !r.o.IndexDebugInfo {
		return nil
	}
	pr, pw := io.Pipe()
	ix := &indexer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(ix.done)
		ix.root, ix.err = listing.Read(pr)
		if ix.err != nil {
			ix.err = fmt.Errorf("NAR listing: %w", ix.err)
		}
		// Unblock the writer if the reader stopped early.
		pr.CloseWithError(ix.err)
	}()
	return ix
}

func (ix *indexer) Write(p []byte) (int, error) { return ix.pw.Write(p) }

// wait ends the NAR (with dumpErr when the dump failed) and returns its tree.
func (ix *indexer) wait(dumpErr error) (*listing.Node, error) {
	if dumpErr != nil {
		ix.pw.CloseWithError(dumpErr)
	} else {
		ix.pw.Close()
	}
	<-ix.done
	return ix.root, ix.err
}

// writeIndex writes the listing <hashpart>.ls and the debuginfo/ entries of
// a NAR stored at url, as Nix does with ?write-nar-listing=1 and
// ?index-debug-info=1. Like Nix, it leaves an existing debuginfo entry
// alone: the same build ID may come with several store paths.
func (r *run) writeIndex(storePath, url string, root *listing.Node) error {
	if r.o.NarListing {
		if err := cachedir.WriteFile(cachedir.ListingPath(r.dir, storePath), listing.JSON(root), 0o644); err != nil {
			return fmt.Errorf("%s: %w", storePath, err)
		}
	}
	if r.o.IndexDebugInfo {
		for _, f := range debuginfo.Find(root) {
			name := filepath.Join(r.dir, "debuginfo", f.Key)
			if _, err := os.Lstat(name); err == nil {
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s: %w", storePath, err)
			}
			if err := cachedir.WriteFile(name, debuginfo.JSON(f, url), 0o644); err != nil {
				return fmt.Errorf("%s: %w", storePath, err)
			}
		}
	}
	return nil
}

// dumpNAR dumps the store path into w and, when a listing or debug info
// index is wanted, also into an indexer; it returns the NAR's tree, or nil
// when none is wanted.
func (r *run) dumpNAR(w io.Writer, storePath string) (*listing.Node, error) {
	ix := r.startIndex()
	if ix == nil {
		return nil, nardump.Dump(w, storePath)
	}
	err := nardump.Dump(io.MultiWriter(w, ix), storePath)
	root, ixErr := ix.wait(err)
	if err != nil {
		return nil, err
	}
	if ixErr != nil {
		return nil, fmt.Errorf("%s: %w", storePath, ixErr)
	}
	return root, nil
}
