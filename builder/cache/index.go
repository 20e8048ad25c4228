package cache

import (
	"fmt"
	"io"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/debuginfo"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
)

// dumpNAR dumps the store path into w with a Dumper of the run's pool; it
// returns the NAR's file tree when a listing or debug info index is wanted
// (from the walk itself: the NAR is never parsed again), else nil.
func (r *run) dumpNAR(w io.Writer, storePath string) (*listing.Node, error) {
	d := r.dumpers.Get().(*nardump.Dumper)
	defer r.dumpers.Put(d)
	info, err := d.Dump(w, storePath)
	if err != nil {
		return nil, err
	}
	r.checkDepth(storePath, info)
	return info.Tree, nil
}

// appendNAR is dumpNAR into a buffer: the NAR appended to dst.
func (r *run) appendNAR(dst []byte, storePath string) ([]byte, *listing.Node, error) {
	d := r.dumpers.Get().(*nardump.Dumper)
	defer r.dumpers.Put(d)
	nar, info, err := d.Append(dst, storePath)
	if err != nil {
		return nar, nil, err
	}
	r.checkDepth(storePath, info)
	return nar, info.Tree, nil
}

// checkDepth warns of a NAR nested deeper than Nix 2.34 and later unpack.
func (r *run) checkDepth(storePath string, info nardump.Info) {
	if msg := nardump.DepthProblem(info.MaxDepth); msg != "" {
		r.emit(Event{Kind: Warning, Path: storePath, Msg: msg})
	}
}

// writeIndex writes the listing <hashpart>.ls and the debuginfo/ entries of
// a NAR stored at url, as Nix does with ?write-nar-listing=1 and
// ?index-debug-info=1. Like Nix, it leaves an existing debuginfo entry
// alone: the same build ID may come with several store paths.
func (r *run) writeIndex(storePath, url string, root *listing.Node) error {
	if r.o.NarListing {
		if err := r.d.WriteFile(cachedir.ListingName(storePath), listing.JSON(root), 0o644); err != nil {
			return fmt.Errorf("%s: %w", storePath, err)
		}
	}
	if r.o.IndexDebugInfo {
		for _, f := range debuginfo.Find(root) {
			name := "debuginfo/" + f.Key
			if has, err := r.d.Has(name); err != nil {
				return fmt.Errorf("%s: %w", storePath, err)
			} else if has {
				continue
			}
			if err := r.d.WriteFile(name, debuginfo.JSON(f, url), 0o644); err != nil {
				return fmt.Errorf("%s: %w", storePath, err)
			}
		}
	}
	return nil
}
