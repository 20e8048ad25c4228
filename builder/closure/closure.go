// Package closure reads the descriptions of a closure of store paths that Nix
// hands to a builder or prints: the structured-attrs exportReferencesGraph
// list, the legacy exportReferencesGraph file, a closureInfo registration and
// `nix path-info --json`.
package closure

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// Path describes one store path of a closure.
type Path struct {
	StorePath  string        // absolute store path
	NarHash    *nixhash.Hash // nil when the input does not record it
	NarSize    uint64        // 0 when the input does not record it
	References []string      // absolute store paths, sorted
	Deriver    string        // absolute .drv path, or ""
	CA         string        // content address, or ""
}

// Closure is a set of store paths, sorted by StorePath.
type Closure []Path

// Validator checks store paths against one store directory.
type Validator struct {
	StoreDir string
}

// CheckPath reports whether p is a syntactically valid store path directly in
// the store directory (no "..", no subpath).
func (v Validator) CheckPath(p string) error {
	prefix := v.StoreDir + "/"
	if !strings.HasPrefix(p, prefix) {
		return fmt.Errorf("%q is not in the store directory %s", p, v.StoreDir)
	}
	base := p[len(prefix):]
	if base == "" || strings.Contains(base, "/") || path.Clean(p) != p {
		return fmt.Errorf("%q is not a top-level store path", p)
	}
	if _, err := storepath.FromString(base); err != nil {
		return fmt.Errorf("%q is not a valid store path: %w", p, err)
	}
	return nil
}

// ParseNarHash accepts every form Nix prints a sha256 NAR hash in: nix32, base16
// or base64 with a "sha256:" prefix, and SRI.
func ParseNarHash(s string) (*nixhash.Hash, error) {
	algo := nixhash.SHA256
	h, err := nixhash.ParseAny(s, &algo)
	if err != nil {
		return nil, fmt.Errorf("NAR hash %q: %w", s, err)
	}
	return &h.Hash, nil
}

// finish validates a closure: every path and reference in the store dir,
// no duplicates, every reference part of the closure. It sorts paths and
// references so that output does not depend on input order.
func finish(v Validator, paths []Path, source string) (Closure, error) {
	seen := make(map[string]bool, len(paths))
	for i := range paths {
		p := &paths[i]
		if err := v.CheckPath(p.StorePath); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", source, i, err)
		}
		if seen[p.StorePath] {
			return nil, fmt.Errorf("%s: %s listed twice", source, p.StorePath)
		}
		seen[p.StorePath] = true
		for _, r := range p.References {
			if err := v.CheckPath(r); err != nil {
				return nil, fmt.Errorf("%s: %s: reference: %w", source, p.StorePath, err)
			}
		}
		if p.Deriver != "" {
			if err := v.CheckPath(p.Deriver); err != nil {
				return nil, fmt.Errorf("%s: %s: deriver: %w", source, p.StorePath, err)
			}
		}
		sort.Strings(p.References)
		p.References = slices.Compact(p.References)
	}
	for _, p := range paths {
		for _, r := range p.References {
			if !seen[r] {
				return nil, fmt.Errorf("%s: %s refers to %s, which is not in the closure", source, p.StorePath, r)
			}
		}
	}
	sort.Slice(paths, func(i, j int) bool { return paths[i].StorePath < paths[j].StorePath })
	return Closure(paths), nil
}

// Merge returns the union of closures, such as the lists of several
// exportReferencesGraph attributes. A path listed twice must be described
// the same way.
func Merge(cs ...Closure) (Closure, error) {
	byPath := map[string]Path{}
	var out Closure
	for _, c := range cs {
		for _, p := range c {
			if q, ok := byPath[p.StorePath]; ok {
				if !q.equal(p) {
					return nil, fmt.Errorf("%s is described differently in two closures", p.StorePath)
				}
				continue
			}
			byPath[p.StorePath] = p
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StorePath < out[j].StorePath })
	return out, nil
}

func (p Path) equal(q Path) bool {
	sameHash := (p.NarHash == nil) == (q.NarHash == nil) &&
		(p.NarHash == nil || p.NarHash.Format(nixhash.Base16, true) == q.NarHash.Format(nixhash.Base16, true))
	return sameHash && p.NarSize == q.NarSize && p.Deriver == q.Deriver && p.CA == q.CA &&
		strings.Join(p.References, " ") == strings.Join(q.References, " ")
}
