// Package cachegraph reads the narinfos of a flat-file binary cache into a
// graph of store paths, and computes closures from the cache's own metadata
// (References and Deriver lines), with no Nix store: what gc keeps and copy
// copies. It also reads the debuginfo/ index. It takes no lock: its
// callers hold the one their command needs.
package cachegraph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// Entry is one narinfo of the cache.
type Entry struct {
	File string // the narinfo file
	Raw  []byte // its bytes, as read
	Info *narinfo.NarInfo
}

// Graph is every narinfo of a cache, by store path.
type Graph struct {
	Dir      string
	StoreDir string
	Paths    map[string]*Entry
	outputs  map[string][]string // .drv store path -> paths whose Deriver names it
}

// ErrNotCache is returned (wrapped) for a directory without nix-cache-info.
var ErrNotCache = errors.New("not a binary cache (no nix-cache-info)")

// Load reads the cache at dir: its nix-cache-info (required) and every
// narinfo, jobs at once (0: the number of CPUs). A narinfo that does not
// parse, or whose StorePath does not match its file name, is an error
// naming the file: a tool that removes files must not guess.
func Load(ctx context.Context, dir string, jobs int) (*Graph, error) {
	info, ok, err := cachedir.ReadInfo(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotCache)
	}
	storeDir := info.StoreDir
	if storeDir == "" {
		storeDir = cachedir.DefaultStoreDir
	}
	files, err := cachedir.NarInfoFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	entries := make([]*Entry, len(files))
	errs := make([]error, len(files))
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	pool.Each(ctx, jobs, idx, func(i int) {
		entries[i], errs[i] = readEntry(files[i], storeDir)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g := &Graph{Dir: dir, StoreDir: storeDir, Paths: make(map[string]*Entry, len(entries)), outputs: map[string][]string{}}
	for _, e := range entries {
		g.Paths[e.Info.StorePath] = e
		if e.Info.Deriver != "" {
			d := storeDir + "/" + e.Info.Deriver
			g.outputs[d] = append(g.outputs[d], e.Info.StorePath)
		}
	}
	return g, nil
}

func readEntry(file, storeDir string) (*Entry, error) {
	raw, ni, err := cachedir.ReadNarInfo(file)
	if err != nil {
		return nil, err
	}
	if path.Dir(ni.StorePath) != storeDir {
		return nil, fmt.Errorf("%s: StorePath %q is not in the cache's store %s", file, ni.StorePath, storeDir)
	}
	if narinfo.HashPart(ni.StorePath)+".narinfo" != filepath.Base(file) {
		return nil, fmt.Errorf("%s: StorePath %s does not match the file name", file, ni.StorePath)
	}
	return &Entry{File: file, Raw: raw, Info: ni}, nil
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
			return nil, nil, fmt.Errorf("%s has no narinfo in %s", r, g.Dir)
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

// DebugEntry is one file of the cache's debuginfo/ index.
type DebugEntry struct {
	Name    string // the file, inside debuginfo/
	Archive string // the NAR it points to, relative to the cache ("nar/…")
	Member  string
	Size    int64
	Raw     []byte // the file's content
}

// LoadDebugInfo reads the cache's debuginfo/ index. Entries that are not
// JSON with an archive in the cache are returned with Archive "".
func LoadDebugInfo(dir string) ([]DebugEntry, error) {
	d := filepath.Join(dir, "debuginfo")
	ents, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	var out []DebugEntry
	var mu sync.Mutex
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), cachedir.TmpPrefix) {
			names = append(names, e.Name())
		}
	}
	var errs []error
	pool.Each(context.Background(), 0, names, func(n string) {
		raw, err := cachedir.ReadRegular(filepath.Join(d, n))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		var j struct{ Archive, Member string }
		de := DebugEntry{Name: n, Size: int64(len(raw)), Raw: raw}
		if json.Unmarshal(raw, &j) == nil {
			if a, ok := strings.CutPrefix(j.Archive, "../"); ok && a == path.Clean(a) && !strings.HasPrefix(a, "../") {
				de.Archive, de.Member = a, j.Member
			}
		}
		out = append(out, de)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CleanURL checks that a narinfo URL names a file inside the cache, and
// returns it cleaned.
func CleanURL(u string) (string, error) {
	c := path.Clean(u)
	if u == "" || strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(u, "://") {
		return "", fmt.Errorf("URL %q is not a file inside the cache", u)
	}
	return c, nil
}
