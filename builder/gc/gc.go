// Package gc removes from a flat-file binary cache everything the closures
// of some kept store paths do not need, judged by the cache's own narinfos
// (no Nix store): narinfos, NARs, .ls listings, debuginfo/ entries and the
// build logs (log/) of derivations no longer kept.
//
// Removal keeps the cache closed and substitutable at every moment, even
// across a power cut: referrers go before their references (the publishing
// order reversed), a narinfo and the debuginfo entries of a NAR before the
// NAR, and with Options.Durable one syncfs separates the narinfo removals
// from the NAR removals, so that no narinfo can outlive its NAR on disk.
package gc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nar/ls"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/debuginfo"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/order"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// Options say what to keep.
type Options struct {
	Dir string
	// Keep are the store paths whose closures stay; each must have a
	// narinfo in the cache.
	Keep []string
	// BuildClosure also keeps what rebuilding the kept paths needs, from
	// Deriver lines (cachegraph.Graph.Closure).
	BuildClosure bool
	// Upstream says the cache is closed relative to an upstream cache:
	// kept paths and references without a narinfo here are served there,
	// neither an error nor a warning. gc asks no one (no network).
	Upstream bool
	// DryRun reports what would go and removes nothing.
	DryRun bool
	// Durable puts a syncfs between the narinfo and the NAR removals, so
	// that a power cut never leaves a narinfo without its NAR. Zero (false)
	// does not sync: for caches that do not outlive the machine's power.
	Durable bool
	// LockWait bounds the wait for commands using the cache (< 0: forever).
	LockWait time.Duration
	Jobs     int // files read or removed at once; 0: the number of CPUs
}

// EventKind says what an Event reports.
type EventKind int

// The events of a collection.
const (
	// Removed: Path's narinfo is removed (or would be, in a dry run).
	Removed EventKind = iota
	// Repointed: the debuginfo entry Path now points to the kept NAR Msg.
	Repointed
	// Warning: Msg is something wrong with the cache that gc worked around.
	Warning
)

// Event is one step of a collection.
type Event struct {
	Kind EventKind
	Path string
	Msg  string
}

// Stats sum up a collection.
type Stats struct {
	Kept, Paths int   // store paths kept and removed
	Files       int   // files removed: narinfos, NARs, listings, debuginfo entries
	Bytes       int64 // their size
	Syncs       int
	Elapsed     time.Duration
}

// Collect removes everything outside the closures of o.Keep from the cache
// at o.Dir, holding its lock alone (a read-only shared lock for a dry run). A kept path
// without a narinfo is an error before anything is removed. report, if not
// nil, gets each event, in the order of removal.
func Collect(ctx context.Context, o Options, report func(Event)) (Stats, error) {
	start := time.Now()
	if report == nil {
		report = func(Event) {}
	}
	if _, ok, err := cachedir.ReadInfo(o.Dir); err != nil {
		return Stats{}, fmt.Errorf("%s: %w", o.Dir, err)
	} else if !ok {
		// Before locking: "not a cache" says more than a lock error.
		return Stats{}, fmt.Errorf("%s: %w", o.Dir, cachegraph.ErrNotCache)
	}
	mode := cachedir.Exclusive
	if o.DryRun {
		// Changes nothing, not even the temporary files of killed runs.
		mode = cachedir.ReadOnly
	}
	lock, err := cachedir.Acquire(ctx, o.Dir, mode, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()
	p, err := plan(ctx, o, report)
	if err != nil {
		return Stats{}, err
	}
	stats, err := p.execute(ctx, o, report)
	stats.Elapsed = time.Since(start)
	return stats, err
}

// victim is a file to remove.
type victim struct {
	name string
	size int64
}

// removal is what a collection removes, in order.
type removal struct {
	kept      int
	paths     []string   // store paths, referrers first
	narinfos  [][]victim // layers, referrers first; in the order of paths
	listings  []victim
	logs      []victim
	debug     []victim
	repoint   map[string][]byte // debuginfo file -> new content
	nars      []victim
	storePath map[string]string // narinfo file -> store path, for reports
}

func plan(ctx context.Context, o Options, report func(Event)) (*removal, error) {
	g, err := cachegraph.Load(ctx, o.Dir, o.Jobs)
	if err != nil {
		return nil, err
	}
	var absent []string
	for _, k := range o.Keep {
		if g.Paths[k] == nil {
			absent = append(absent, k)
		}
	}
	if len(absent) > 0 && !o.Upstream {
		return nil, fmt.Errorf("kept path without a narinfo in %s (nothing was removed): %s", o.Dir, strings.Join(absent, ", "))
	}
	var upstream func(string) bool
	if o.Upstream {
		upstream = func(p string) bool { return g.Paths[p] == nil }
	}
	kept, missing, err := g.Closure(o.Keep, o.BuildClosure, upstream)
	if err != nil {
		return nil, err
	}
	for _, m := range missing {
		report(Event{Kind: Warning, Path: m.Path, Msg: "referenced by " + m.Referrer + " but has no narinfo: the cache was not closed"})
	}
	r := &removal{kept: len(kept), repoint: map[string][]byte{}, storePath: map[string]string{}}
	var gone []string
	keptURLs := map[string]bool{}
	keptHashes := map[string]bool{}
	for p, e := range g.Paths {
		if kept[p] {
			keptHashes[narinfo.HashPart(p)] = true
			if u, err := cachegraph.CleanURL(e.Info.URL); err == nil {
				keptURLs[u] = true
			}
			continue
		}
		gone = append(gone, p)
	}
	layers, err := order.Layers(gone, g.Refs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Dir, err)
	}
	for i := len(layers) - 1; i >= 0; i-- {
		var layer []victim
		for _, p := range layers[i] {
			e := g.Paths[p]
			r.paths = append(r.paths, p)
			layer = append(layer, victim{e.File, int64(len(e.Raw))})
			r.storePath[e.File] = p
		}
		r.narinfos = append(r.narinfos, layer)
	}

	// NARs: those of removed narinfos, and any file of nar/ no kept
	// narinfo names (left by interrupted runs or other tools).
	nars := map[string]bool{}
	for _, p := range gone {
		if u, err := cachegraph.CleanURL(g.Paths[p].Info.URL); err == nil && !keptURLs[u] {
			nars[u] = true
		}
	}
	if ents, err := os.ReadDir(filepath.Join(o.Dir, "nar")); err == nil {
		for _, e := range ents {
			if u := "nar/" + e.Name(); !e.IsDir() && !strings.HasPrefix(e.Name(), cachedir.TmpPrefix) && !keptURLs[u] {
				nars[u] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(o.Dir, "nar"), err)
	}
	for _, u := range slices.Sorted(maps.Keys(nars)) {
		if v, ok := stat(filepath.Join(o.Dir, u)); ok {
			r.nars = append(r.nars, v)
		}
	}

	// Listings of every hash part without a kept narinfo.
	top, err := os.ReadDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.Dir, err)
	}
	for _, e := range top {
		if h, ok := strings.CutSuffix(e.Name(), ".ls"); ok && !e.IsDir() && !strings.HasPrefix(h, ".") && !keptHashes[h] {
			if v, ok := stat(filepath.Join(o.Dir, e.Name())); ok {
				r.listings = append(r.listings, v)
			}
		}
	}

	// Build logs whose derivation is not kept and that no kept path
	// names as its Deriver.
	keptDrvs := map[string]bool{}
	for p := range kept {
		keptDrvs[path.Base(p)] = true
		if d := g.Paths[p].Info.Deriver; d != "" {
			keptDrvs[d] = true
		}
	}
	logs, err := cachedir.LogFiles(o.Dir)
	if err != nil {
		return nil, err
	}
	for _, name := range logs {
		if !keptDrvs[name] {
			if v, ok := stat(filepath.Join(o.Dir, cachedir.LogDir, name)); ok {
				r.logs = append(r.logs, v)
			}
		}
	}

	if err := r.planDebugInfo(o.Dir, g, kept, keptURLs); err != nil {
		return nil, err
	}
	return r, nil
}

// planDebugInfo removes the debuginfo entries that point to NARs no kept
// narinfo names, or re-points them to a kept NAR with the same debug file
// (found in the kept paths' .ls listings), as Nix would have written them
// had the kept path come first.
func (r *removal) planDebugInfo(dir string, g *cachegraph.Graph, kept, keptURLs map[string]bool) error {
	entries, err := cachegraph.LoadDebugInfo(dir)
	if err != nil {
		return err
	}
	var orphans []cachegraph.DebugEntry
	for _, e := range entries {
		if e.Archive != "" && !keptURLs[e.Archive] {
			orphans = append(orphans, e)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	// Build IDs the kept paths have, from their listings.
	type keptFile struct {
		debuginfo.File
		url string // the kept NAR that has it
	}
	have := map[string]keptFile{} // by debuginfo key
	for _, p := range slices.Sorted(maps.Keys(kept)) {
		raw, err := cachedir.ReadRegular(cachedir.ListingPath(dir, p))
		if err != nil {
			continue // no listing: this path's files are unknown
		}
		root, err := ls.ParseLS(strings.NewReader(string(raw)))
		if err != nil {
			continue
		}
		u, err := cachegraph.CleanURL(g.Paths[p].Info.URL)
		if err != nil {
			continue
		}
		for _, f := range buildIDFiles(&root.Root) {
			if _, ok := have[f.Key]; !ok {
				have[f.Key] = keptFile{f, u}
			}
		}
	}
	for _, e := range orphans {
		name := filepath.Join(dir, "debuginfo", e.Name)
		if k, ok := have[e.Name]; ok && e.Member == k.Member {
			r.repoint[name] = debuginfo.JSON(k.File, k.url)
			continue
		}
		r.debug = append(r.debug, victim{name, e.Size})
	}
	return nil
}

// buildIDFiles lists the debug files of a listing as debuginfo.Find does
// for a NAR.
func buildIDFiles(root *ls.Node) []debuginfo.File {
	n := root
	for _, name := range strings.Split(debuginfo.BuildIDDir, "/") {
		if n == nil || n.Type != nar.TypeDirectory {
			return nil
		}
		n = n.Entries[name]
	}
	if n == nil || n.Type != nar.TypeDirectory {
		return nil
	}
	var out []debuginfo.File
	for _, d := range slices.Sorted(maps.Keys(n.Entries)) {
		sub := n.Entries[d]
		if sub == nil || sub.Type != nar.TypeDirectory {
			continue
		}
		for _, f := range slices.Sorted(maps.Keys(sub.Entries)) {
			if e := sub.Entries[f]; e != nil && e.Type == nar.TypeRegular {
				if file, ok := debuginfo.FileAt(d, f); ok {
					out = append(out, file)
				}
			}
		}
	}
	return out
}

func stat(name string) (victim, bool) {
	fi, err := os.Lstat(name)
	if err != nil {
		return victim{}, false
	}
	return victim{name, fi.Size()}, true
}

// execute removes, in order: re-pointed and orphaned debuginfo entries,
// narinfos (referrers first, a layer at a time) and listings; a syncfs; the
// NARs. It stops before the NARs at the first failure, so that no NAR goes
// while a narinfo naming it may stay. Within each step files go jobs at a
// time: the unlinks, not the planning, are what a large gc waits for.
func (r *removal) execute(ctx context.Context, o Options, report func(Event)) (Stats, error) {
	stats := Stats{Kept: r.kept, Paths: len(r.paths)}
	var mu sync.Mutex
	removeAll := func(vs []victim) error {
		var errs []error
		pool.Each(ctx, o.Jobs, vs, func(v victim) {
			var err error
			if !o.DryRun {
				if err = os.Remove(v.name); errors.Is(err, os.ErrNotExist) {
					err = nil
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if p := r.storePath[v.name]; p != "" {
					err = fmt.Errorf("%s: %w", p, err)
				}
				errs = append(errs, err)
				return
			}
			stats.Files++
			stats.Bytes += v.size
		})
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	names := make([]string, 0, len(r.repoint))
	for n := range r.repoint {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !o.DryRun {
			if err := cachedir.WriteFile(n, r.repoint[n], 0o644); err != nil {
				return stats, err
			}
		}
		report(Event{Kind: Repointed, Path: n, Msg: string(r.repoint[n])})
	}
	if err := removeAll(r.debug); err != nil {
		return stats, err
	}
	for _, layer := range r.narinfos {
		if err := removeAll(layer); err != nil {
			return stats, err
		}
		for _, v := range layer {
			report(Event{Kind: Removed, Path: r.storePath[v.name]})
		}
	}
	if err := removeAll(r.listings); err != nil {
		return stats, err
	}
	if err := removeAll(r.logs); err != nil {
		return stats, err
	}
	if o.Durable && !o.DryRun && len(r.nars) > 0 {
		stats.Syncs++
		if err := cachedir.SyncFS(o.Dir); err != nil {
			return stats, err
		}
	}
	return stats, removeAll(r.nars)
}
