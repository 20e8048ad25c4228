// Package gc removes from a flat-file binary cache everything the closures
// of some kept store paths do not need, judged by the cache's own narinfos
// (no Nix store): narinfos, NARs, .ls listings, debuginfo/ entries and the
// build logs (log/) of derivations no longer kept.
//
// An entry the cache may not hold (a symlink, a file that is not regular,
// a narinfo Nix rejects, a debuginfo entry that does not parse) is removed
// itself, never what it points to, and reported: one poisoned file must
// not stop every later gc. A NAR is removed only as a file directly under
// nar/ with a NAR's name (cachedir.NarFile), whatever a narinfo's URL says.
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
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/debuginfo"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/order"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
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
	// LockWait bounds the wait for the commands using the cache; 0 waits
	// as long as it takes.
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
	// Invalid: Path is an entry the cache may not hold, Msg what is wrong
	// with it; it is removed itself (or would be, in a dry run).
	Invalid
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
	Invalid     int   // invalid entries removed
	Bytes       int64 // their size
	Syncs       int
	Elapsed     time.Duration
}

// ErrNoLock is returned (wrapped) on a file system without flock: gc,
// which removes files, does not run unlocked beside writers.
var ErrNoLock = errors.New(cachedir.NoFlock + ": gc does not run unlocked")

// Collect removes everything outside the closures of o.Keep from the cache
// at o.Dir, holding its lock alone (a read-only shared lock for a dry run). A kept path
// without a valid narinfo is an error before anything is removed. report, if not
// nil, gets each event, in the order of removal.
func Collect(ctx context.Context, o Options, report func(Event)) (Stats, error) {
	start := time.Now()
	if report == nil {
		report = func(Event) {}
	}
	if len(o.Keep) == 0 {
		return Stats{}, errors.New("gc: nothing to keep (gc never empties a cache)")
	}
	d, err := cachedir.Open(o.Dir)
	if err != nil {
		return Stats{}, err
	}
	defer d.Close()
	// Before locking: "not a cache" says more than a lock error.
	_, infoErr := d.RequireInfo()
	if infoErr != nil && !errors.Is(infoErr, cachedir.ErrInvalidEntry) {
		return Stats{}, infoErr
	}
	mode := cachedir.Exclusive
	if o.DryRun {
		// Changes nothing, not even the temporary files of killed runs.
		mode = cachedir.ReadOnly
	}
	lock, err := d.Lock(ctx, mode, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()
	if !lock.Supported() {
		if !o.DryRun {
			return Stats{}, fmt.Errorf("%s: %w", o.Dir, ErrNoLock)
		}
		report(Event{Kind: Warning, Path: o.Dir, Msg: cachedir.NoFlock + ": a writer may change it meanwhile"})
	}
	if infoErr != nil {
		// Without the store directory nothing can be judged: the entry
		// goes (a writer makes a new one), and nothing else this time.
		return Stats{}, removeInvalidInfo(d, o, infoErr, report)
	}
	p, err := plan(ctx, d, o, report)
	if err != nil {
		return Stats{}, err
	}
	stats, err := p.execute(ctx, d, o, report)
	stats.Elapsed = time.Since(start)
	return stats, err
}

// victim is a file to remove, relative to the cache.
type victim struct {
	name string
	size int64
}

// bad is an invalid entry to remove (a directory with what it holds).
type bad struct {
	victim
	err error
}

// removal is what a collection removes, in order.
type removal struct {
	kept      int
	invalid   []bad      // first: nothing valid depends on them
	paths     []string   // store paths, referrers first
	narinfos  [][]victim // layers, referrers first; in the order of paths
	listings  []victim
	logs      []victim
	debug     []victim
	repoint   map[string][]byte // debuginfo file -> new content
	nars      []victim
	storePath map[string]string // narinfo file -> store path, for reports
}

func plan(ctx context.Context, d *cachedir.Dir, o Options, report func(Event)) (*removal, error) {
	g, err := cachegraph.Load(ctx, d, o.Jobs)
	if err != nil {
		return nil, err
	}
	invalid := map[string]bool{} // narinfo entries removed as invalid
	for _, err := range g.Invalid {
		if rel, ok := d.Rel(err); ok {
			invalid[rel] = true
		}
	}
	var absent, keep []string
	for _, k := range o.Keep {
		switch {
		case g.Paths[k] != nil:
			keep = append(keep, k)
		case invalid[cachedir.NarInfoName(k)] && !o.Upstream:
			// Removed below: a poisoned root must not stop every gc.
			report(Event{Kind: Warning, Path: k, Msg: "kept, but its narinfo is invalid: it goes, and its closure is kept only as other kept paths need it"})
		default:
			absent = append(absent, k)
			keep = append(keep, k)
		}
	}
	if len(absent) > 0 && !o.Upstream {
		return nil, fmt.Errorf("kept path without a narinfo in %s (nothing was removed): %s", o.Dir, strings.Join(absent, ", "))
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("every kept path's narinfo in %s is invalid (nothing was removed)", o.Dir)
	}
	var upstream func(string) bool
	if o.Upstream {
		upstream = func(p string) bool { return g.Paths[p] == nil }
	}
	kept, missing, err := g.Closure(keep, o.BuildClosure, upstream)
	if err != nil {
		return nil, err
	}
	for _, m := range missing {
		report(Event{Kind: Warning, Path: m.Path, Msg: "referenced by " + m.Referrer + " but has no valid narinfo: the cache was not closed"})
	}
	r := &removal{kept: len(kept), repoint: map[string][]byte{}, storePath: map[string]string{}}
	layoutOK := map[string]bool{}
	for _, sub := range cachedir.Dirs {
		layoutOK[sub] = true
	}
	for _, err := range d.CheckLayout() {
		sub, _ := d.Rel(err)
		layoutOK[sub] = false
		r.addInvalid(d, err)
	}
	for _, err := range g.Invalid {
		r.addInvalid(d, err)
	}
	var gone []string
	keptNARs := map[string]bool{}
	keptHashes := map[string]bool{}
	for p := range g.Paths {
		if kept[p] {
			keptHashes[narinfo.HashPart(p)] = true
			keptNARs[g.NAR(p)] = true
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

	// NARs: the files of nar/ with a NAR's name that no kept narinfo
	// names (those of removed narinfos, and those interrupted runs or
	// other tools left). Other entries of nar/ are not NARs: anything but
	// a regular file is removed as invalid, a regular file with another
	// name left alone.
	if layoutOK["nar"] {
		ents, err := d.List("nar")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			rel := e.Rel("nar")
			switch _, nameErr := cachedir.NarFile(rel); {
			case !e.Type.IsRegular():
				r.addInvalid(d, d.NotRegular(e, "nar"))
			case nameErr == nil && !keptNARs[rel]:
				if v, ok := stat(d, rel); ok {
					r.nars = append(r.nars, v)
				}
			}
		}
	}

	// Listings of every hash part without a kept narinfo.
	top, err := d.List("")
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		h, ok := strings.CutSuffix(e.Name, ".ls")
		switch {
		case !ok || e.Type.IsDir():
		case !e.Type.IsRegular():
			r.addInvalid(d, d.NotRegular(e, ""))
		case !keptHashes[h]:
			if v, ok := stat(d, e.Name); ok {
				r.listings = append(r.listings, v)
			}
		}
	}

	// Build logs whose derivation is not kept and that no kept path
	// names as its Deriver.
	if layoutOK[cachedir.LogDir] {
		keptDrvs := map[string]bool{}
		for p := range kept {
			keptDrvs[path.Base(p)] = true
			if d := g.Paths[p].Info.Deriver; d != "" {
				keptDrvs[d] = true
			}
		}
		logs, invalid, err := d.Logs()
		if err != nil {
			return nil, err
		}
		for _, err := range invalid {
			r.addInvalid(d, err)
		}
		for _, name := range logs {
			if !keptDrvs[path.Base(name)] {
				if v, ok := stat(d, name); ok {
					r.logs = append(r.logs, v)
				}
			}
		}
	}

	if layoutOK["debuginfo"] {
		if err := r.planDebugInfo(d, g, kept, keptNARs); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// removeInvalidInfo removes a nix-cache-info that is not a regular file
// (under the lock; a dry run only reports it) and returns the error that
// stops the collection.
func removeInvalidInfo(d *cachedir.Dir, o Options, infoErr error, report func(Event)) error {
	if !o.DryRun {
		if err := d.Remove(cachedir.InfoFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var ee *cachedir.EntryError
	errors.As(infoErr, &ee)
	report(Event{Kind: Invalid, Path: d.Name(cachedir.InfoFile), Msg: ee.What})
	return fmt.Errorf("%s: its %s was invalid, so no path could be judged: nothing else was removed", o.Dir, cachedir.InfoFile)
}

func (r *removal) addInvalid(d *cachedir.Dir, err error) {
	rel, ok := d.Rel(err)
	if !ok {
		return
	}
	v, _ := stat(d, rel)
	v.name = rel
	r.invalid = append(r.invalid, bad{v, err})
}

// planDebugInfo removes the debuginfo entries that point to NARs no kept
// narinfo names, or re-points them to a kept NAR with the same debug file
// (found in the kept paths' .ls listings), as Nix would have written them
// had the kept path come first; and the entries that are invalid.
func (r *removal) planDebugInfo(d *cachedir.Dir, g *cachegraph.Graph, kept, keptNARs map[string]bool) error {
	entries, invalid, err := cachegraph.LoadDebugInfo(d)
	if err != nil {
		return err
	}
	for _, err := range invalid {
		r.addInvalid(d, err)
	}
	var orphans []cachegraph.DebugEntry
	for _, e := range entries {
		if !keptNARs[e.Archive] {
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
		raw, err := d.ReadFile(cachedir.ListingName(p))
		if err != nil {
			continue // no listing: this path's files are unknown
		}
		root, err := listing.Parse(raw)
		if err != nil {
			continue
		}
		for _, f := range debuginfo.Find(root) {
			if _, ok := have[f.Key]; !ok {
				have[f.Key] = keptFile{f, g.NAR(p)}
			}
		}
	}
	for _, e := range orphans {
		name := "debuginfo/" + e.Name
		if k, ok := have[e.Name]; ok && e.Member == k.Member {
			r.repoint[name] = debuginfo.JSON(k.File, k.url)
			continue
		}
		r.debug = append(r.debug, victim{name, e.Size})
	}
	return nil
}

func stat(d *cachedir.Dir, rel string) (victim, bool) {
	fi, err := d.Lstat(rel)
	if err != nil {
		return victim{}, false
	}
	return victim{rel, fi.Size()}, true
}

// execute removes, in order: invalid entries, re-pointed and orphaned
// debuginfo entries, narinfos (referrers first, a layer at a time) and
// listings; a syncfs; the NARs. It stops before the NARs at the first
// failure, so that no NAR goes while a narinfo naming it may stay. Within
// each step files go jobs at a time: the unlinks, not the planning, are
// what a large gc waits for.
func (r *removal) execute(ctx context.Context, d *cachedir.Dir, o Options, report func(Event)) (Stats, error) {
	stats := Stats{Kept: r.kept, Paths: len(r.paths)}
	var mu sync.Mutex
	removeAll := func(vs []victim) error {
		var errs []error
		pool.Each(ctx, o.Jobs, vs, func(v victim) {
			var err error
			if !o.DryRun {
				if err = d.Remove(v.name); errors.Is(err, fs.ErrNotExist) {
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
	for _, b := range r.invalid {
		if !o.DryRun {
			if err := d.RemoveAll(b.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return stats, err
			}
		}
		stats.Invalid++
		stats.Files++
		stats.Bytes += b.size
		var ee *cachedir.EntryError
		errors.As(b.err, &ee)
		report(Event{Kind: Invalid, Path: cachedir.Printable(ee.Name), Msg: ee.What})
	}
	for _, n := range slices.Sorted(maps.Keys(r.repoint)) {
		if !o.DryRun {
			if err := d.WriteFile(n, r.repoint[n], 0o644); err != nil {
				return stats, err
			}
		}
		report(Event{Kind: Repointed, Path: d.Name(n), Msg: string(r.repoint[n])})
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
		if err := d.SyncFS(); err != nil {
			return stats, err
		}
	}
	return stats, removeAll(r.nars)
}
