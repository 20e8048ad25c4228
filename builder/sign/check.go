package sign

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/narcheck"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// ErrInvalidSignature is returned (wrapped) for a narinfo that carries a
// signature by the key's name that does not verify, unless
// DirOptions.ReplaceInvalid allows replacing it.
var ErrInvalidSignature = errors.New("a signature by the key's name does not verify (the narinfo changed after it was signed, or another key has that name)")

// checker decides whether a narinfo may be signed: a signature makes every
// client that trusts the key install the NAR under the store path, so the
// narinfo must describe the path truly as far as it can be known here.
type checker struct {
	storeDir string
	// local is the local store's record of the paths valid in it.
	local map[string]closure.Path
	// open opens the NAR file a narinfo's URL names.
	open func(url string) (io.ReadCloser, error)
}

// check returns nil when ni may be signed: its NAR hashes and
// decompresses to what it says (the NarHash is of that NAR, not of another
// path's), and, for a path valid in the local store, its NarHash, NarSize
// and References are the store's. cacheOnly reports a path the local store
// does not have: then nothing ties the content to the store path but the
// cache itself.
func (c *checker) check(ctx context.Context, ni *narinfo.NarInfo) (cacheOnly bool, err error) {
	if err := (closure.Validator{StoreDir: c.storeDir}).CheckPath(ni.StorePath); err != nil {
		return false, fmt.Errorf("StorePath: %w", err)
	}
	if p, ok := c.local[ni.StorePath]; ok {
		if err := matchStore(ni, p, c.storeDir); err != nil {
			return false, err
		}
	} else {
		cacheOnly = true
	}
	f, err := c.open(ni.URL)
	if err != nil {
		return false, fmt.Errorf("NAR %s: %w", ni.URL, err)
	}
	defer f.Close()
	if err := narcheck.Check(ctx, f, ni); err != nil {
		return false, fmt.Errorf("NAR %s does not match the narinfo: %w", ni.URL, err)
	}
	return cacheOnly, nil
}

// matchStore compares what a narinfo says of a path with what the local
// store records of it.
func matchStore(ni *narinfo.NarInfo, p closure.Path, storeDir string) error {
	var errs []error
	if ni.NarHash == nil || p.NarHash == nil || ni.NarHash.Algo() != p.NarHash.Algo() ||
		string(ni.NarHash.Digest()) != string(p.NarHash.Digest()) {
		errs = append(errs, fmt.Errorf("NarHash is %s, the local store has %s", fmtHash(ni.NarHash), p.NarHash.Format(nixhash.NixBase32, true)))
	}
	if ni.NarSize != p.NarSize {
		errs = append(errs, fmt.Errorf("NarSize is %d, the local store has %d", ni.NarSize, p.NarSize))
	}
	var refs []string
	for _, r := range ni.References {
		refs = append(refs, path.Join(storeDir, r))
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	if !slices.Equal(refs, p.References) {
		errs = append(errs, fmt.Errorf("the narinfo's References are %q, the local store has %q", baseNames(refs), baseNames(p.References)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s is valid in the local store, which the narinfo contradicts: %w", ni.StorePath, errors.Join(errs...))
	}
	return nil
}

func fmtHash(h *nixhash.HashWithEncoding) string {
	if h == nil {
		return "missing"
	}
	return h.Format(nixhash.NixBase32, true)
}

func baseNames(paths []string) string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = path.Base(p)
	}
	return strings.Join(names, " ")
}
