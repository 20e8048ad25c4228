// Package cachegraph reads the narinfos of a flat-file binary cache into a
// graph of store paths, and computes closures from the cache's own metadata
// (References and Deriver lines), with no Nix store: what gc keeps and copy
// copies. It also reads the debuginfo/ index. It takes no lock: its
// callers hold the one their command needs.
package cachegraph

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/debuginfo"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// Entry is one valid narinfo of the cache.
type Entry struct {
	File string // the narinfo file, relative to the cache
	Raw  []byte // its bytes, as read
	Info *narinfo.NarInfo
}

// Graph is every valid narinfo of a cache, by store path.
type Graph struct {
	Dir      *cachedir.Dir
	StoreDir string
	Paths    map[string]*Entry
	// Invalid are the narinfo entries the cache may not hold
	// (cachedir.EntryError): symlinks, other files that are not regular,
	// misnamed, not parsing as Nix parses them, or naming no NAR. Each
	// command decides what to do with them; none follows or trusts them.
	Invalid []error
	outputs map[string][]string // .drv store path -> paths whose Deriver names it
}

// Load reads the cache d: its nix-cache-info (required: cachedir.ErrNotCache)
// and every narinfo, jobs at once (0: the number of CPUs). An error that
// is not about an entry (a read error, cancellation) stops it.
func Load(ctx context.Context, d *cachedir.Dir, jobs int) (*Graph, error) {
	info, err := d.RequireInfo()
	if err != nil {
		return nil, err
	}
	storeDir := info.StoreDir
	if storeDir == "" {
		storeDir = cachedir.DefaultStoreDir
	}
	files, invalid, err := d.NarInfos()
	if err != nil {
		return nil, err
	}
	entries := make([]*Entry, len(files))
	errs := make([]error, len(files))
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	pool.Each(ctx, jobs, idx, func(i int) {
		raw, ni, err := d.ReadNarInfo(files[i], storeDir)
		entries[i], errs[i] = &Entry{File: files[i], Raw: raw, Info: ni}, err
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := &Graph{Dir: d, StoreDir: storeDir, Paths: make(map[string]*Entry, len(entries)), Invalid: invalid, outputs: map[string][]string{}}
	var fatal []error
	for i, e := range entries {
		switch {
		case errors.Is(errs[i], cachedir.ErrInvalidEntry):
			g.Invalid = append(g.Invalid, errs[i])
			continue
		case errs[i] != nil:
			fatal = append(fatal, errs[i])
			continue
		}
		g.Paths[e.Info.StorePath] = e
		if e.Info.Deriver != "" {
			d := storeDir + "/" + e.Info.Deriver
			g.outputs[d] = append(g.outputs[d], e.Info.StorePath)
		}
	}
	if err := errors.Join(fatal...); err != nil {
		return nil, err
	}
	return g, nil
}

// Refs returns the references of p as full store paths, itself excluded.
func (g *Graph) Refs(p string) []string {
	e := g.Paths[p]
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.Info.References))
	for _, r := range e.Info.References {
		if full := g.StoreDir + "/" + r; full != p {
			out = append(out, full)
		}
	}
	return out
}

// NAR is the NAR file of p, relative to the cache (its URL, checked by
// cachedir.NarFile when it was read).
func (g *Graph) NAR(p string) string { return g.Paths[p].Info.URL }

// Missing is a reference without a narinfo in the cache.
type Missing struct {
	Path, Referrer string
}

func (m Missing) String() string {
	return fmt.Sprintf("%s (referenced by %s)", m.Path, m.Referrer)
}

// Closure returns the closure of roots by References (roots must have
// narinfos; references without one are returned as missing). With
// buildClosure it adds, from the metadata alone, what rebuilding them needs,
// as nix-store -qR --include-outputs would: the derivation each kept path's
// Deriver line names (when the cache has it) with its closure, and every
// path whose Deriver is a kept derivation, with its closure, until nothing
// is added. Paths for which upstream returns true are served elsewhere (an
// upstream cache): they are neither kept, nor followed, nor missing.
func (g *Graph) Closure(roots []string, buildClosure bool, upstream func(string) bool) (map[string]bool, []Missing, error) {
	kept := map[string]bool{}
	var missing []Missing
	var stack []string
	add := func(p, referrer string) {
		if kept[p] || upstream != nil && upstream(p) {
			return
		}
		if g.Paths[p] == nil {
			missing = append(missing, Missing{p, referrer})
			return
		}
		kept[p] = true
		stack = append(stack, p)
	}
	for _, r := range roots {
		if g.Paths[r] == nil && (upstream == nil || !upstream(r)) {
			return nil, nil, fmt.Errorf("%s has no valid narinfo in %s", r, g.Dir.Path())
		}
		add(r, "")
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, r := range g.Refs(p) {
			add(r, p)
		}
		if !buildClosure {
			continue
		}
		// Derivers the cache lacks are not an error: the cache was written
		// without build closures.
		if d := g.Paths[p].Info.Deriver; d != "" {
			if full := g.StoreDir + "/" + d; g.Paths[full] != nil {
				add(full, p)
			}
		}
		if strings.HasSuffix(p, ".drv") {
			for _, o := range g.outputs[p] {
				add(o, p)
			}
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].Path < missing[j].Path })
	return kept, missing, nil
}

// DebugEntry is one valid entry of the cache's debuginfo/ index.
type DebugEntry struct {
	Name    string // the file, inside debuginfo/
	Archive string // the NAR it points to, relative to the cache ("nar/…")
	Member  string
	Size    int64
	Raw     []byte // the file's content
}

// LoadDebugInfo reads the cache's debuginfo/ index: its valid entries
// (debuginfo.Parse), and, in invalid, a cachedir.EntryError for each entry
// that is not (a symlink, not a regular file, not parsing). A debuginfo
// that is not a real directory has no entries (CheckLayout says so).
func LoadDebugInfo(d *cachedir.Dir) (entries []DebugEntry, invalid []error, err error) {
	ents, err := d.List("debuginfo")
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, cachedir.ErrInvalidEntry):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	var mu sync.Mutex
	var errs []error
	pool.Each(context.Background(), 0, ents, func(e cachedir.Entry) {
		rel := e.Rel("debuginfo")
		if e.Type.IsDir() {
			return // not a file of the index, nor one gc may remove
		}
		raw, err := d.ReadFileMax(rel, 1<<16)
		var de DebugEntry
		if err == nil {
			var f debuginfo.File
			f, de.Archive, err = debuginfo.Parse(e.Name, raw)
			if err != nil {
				err = &cachedir.EntryError{Name: d.Name(rel), What: err.Error()}
			}
			de.Name, de.Member, de.Size, de.Raw = e.Name, f.Member, int64(len(raw)), raw
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, cachedir.ErrInvalidEntry):
			invalid = append(invalid, err)
		case err != nil:
			errs = append(errs, err)
		default:
			entries = append(entries, de)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	sort.Slice(invalid, func(i, j int) bool { return invalid[i].Error() < invalid[j].Error() })
	return entries, invalid, nil
}
