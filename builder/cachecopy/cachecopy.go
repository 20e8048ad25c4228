// Package cachecopy copies store paths from one flat-file binary cache to
// another, as files: each NAR byte for byte (no recompression) after
// checking its FileHash and FileSize, its narinfo as it is (signatures
// kept), its .ls listing, its debuginfo/ entries and its build logs.
//
// It publishes as the cache writer does: NARs, listings and debuginfo
// entries first, then (with Options.Durable, after a syncfs) the narinfos
// layer by layer, references first, with a syncfs after each layer; so the
// destination is closed and substitutable at every moment, across power
// cuts too. The source is only read.
package cachecopy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/order"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
)

// Options say what to copy where.
type Options struct {
	Src, Dst string
	// Paths are the store paths whose closures are copied; none: all of Src.
	Paths []string
	// BuildClosure also copies what rebuilding them needs, from Deriver
	// lines (cachegraph.Graph.Closure).
	BuildClosure bool
	// Durable makes NARs durable before their narinfos, and each layer of
	// narinfos before the next. Zero (false) syncs nothing: for caches
	// that do not outlive the machine's power.
	Durable bool
	// LockWait bounds the wait for a gc holding either cache (< 0: forever).
	LockWait time.Duration
	Jobs     int // NARs copied at once; 0: the number of CPUs
	// Served, if not nil, says which of some store paths an upstream
	// cache serves: those are not copied, and Src may lack them (it is
	// closed relative to the upstream). Only paths Dst lacks are asked.
	Served func(ctx context.Context, paths []string) (map[string]bool, error)
}

// ErrSameCache is returned when Src and Dst are the same directory.
var ErrSameCache = errors.New("the source and the destination are the same cache")

// EventKind says what an Event reports.
type EventKind int

// The events of a copy.
const (
	// Planned: Paths paths of FileBytes bytes of NAR files are to be copied.
	Planned EventKind = iota
	// Skipped: Path's narinfo is in Dst already.
	Skipped
	// Copied: Path's narinfo is published in Dst, its NAR file FileBytes.
	Copied
)

// Event is one step of a copy.
type Event struct {
	Kind      EventKind
	Path      string
	Paths     int
	FileBytes uint64
}

// Stats sum up a copy.
type Stats struct {
	Paths, Copied, Skipped int
	FileBytes              uint64 // NAR bytes copied
	Syncs                  int
	Elapsed                time.Duration
}

// Copy copies the closures of o.Paths (all of o.Src when none) from o.Src
// to o.Dst, skipping paths whose narinfo Dst has. A new Dst gets Src's
// nix-cache-info; an existing one must be for the same store. A reference
// missing from Src is an error naming it, before anything is copied.
func Copy(ctx context.Context, o Options, report func(Event)) (Stats, error) {
	start := time.Now()
	if report == nil {
		report = func(Event) {}
	}
	info, ok, err := cachedir.ReadInfo(o.Src)
	if err != nil {
		return Stats{}, fmt.Errorf("%s: %w", o.Src, err)
	}
	if !ok {
		return Stats{}, fmt.Errorf("%s: %w", o.Src, cachegraph.ErrNotCache)
	}
	if same, err := sameDir(o.Src, o.Dst); err != nil {
		return Stats{}, err
	} else if same {
		return Stats{}, fmt.Errorf("%s and %s: %w", o.Src, o.Dst, ErrSameCache)
	}
	// Two shared locks wait for nothing but a gc, which holds one cache
	// only: no cycle of waits can form. The source's lock is taken
	// read-only, without the stale-file cleanup that would change it.
	srcLock, err := cachedir.Acquire(ctx, o.Src, cachedir.ReadOnly, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer srcLock.Release()
	if err := os.MkdirAll(o.Dst, 0o755); err != nil {
		return Stats{}, fmt.Errorf("create cache: %w", err)
	}
	lock, err := cachedir.Acquire(ctx, o.Dst, cachedir.Shared, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()

	g, err := cachegraph.Load(ctx, o.Src, o.Jobs)
	if err != nil {
		return Stats{}, err
	}
	if info.StoreDir == "" {
		info.StoreDir = g.StoreDir
	}
	roots := o.Paths
	if len(roots) == 0 {
		roots = slices.Sorted(maps.Keys(g.Paths))
	}
	want, missing, err := g.Closure(roots, o.BuildClosure, nil)
	if err != nil && o.Served == nil {
		return Stats{}, err
	}
	if o.Served != nil {
		// Ask about roots and references Src lacks and what Dst lacks,
		// then take the closure again, stopping at what upstream serves.
		var ask []string
		for _, r := range roots {
			if g.Paths[r] == nil {
				ask = append(ask, r)
			}
		}
		for p := range want {
			if !hasNarInfo(o.Dst, p) {
				ask = append(ask, p)
			}
		}
		for _, m := range missing {
			ask = append(ask, m.Path)
		}
		served, err := o.Served(ctx, ask)
		if err != nil {
			return Stats{}, err
		}
		if want, missing, err = g.Closure(roots, o.BuildClosure, func(p string) bool { return served[p] }); err != nil {
			return Stats{}, err
		}
	}
	if len(missing) > 0 {
		var names []string
		for _, m := range missing {
			names = append(names, m.String())
		}
		return Stats{}, fmt.Errorf("%s is not closed: no narinfo (nor one upstream) for %s", o.Src, strings.Join(names, ", "))
	}
	if err := cachedir.Init(o.Dst, info); err != nil {
		return Stats{}, err
	}
	c := &copier{o: o, g: g, stats: Stats{Paths: len(want)}, report: report}
	err = c.run(ctx, want)
	c.stats.Elapsed = time.Since(start)
	return c.stats, err
}

type copier struct {
	o      Options
	g      *cachegraph.Graph
	debug  map[string][]cachegraph.DebugEntry // Src's, by NAR URL
	stats  Stats                              // the goroutine of run's
	report func(Event)
}

func (c *copier) run(ctx context.Context, want map[string]bool) error {
	var todo []string
	var bytes uint64
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if hasNarInfo(c.o.Dst, p) {
			c.stats.Skipped++
			c.report(Event{Kind: Skipped, Path: p})
			continue
		}
		todo = append(todo, p)
		bytes += c.g.Paths[p].Info.FileSize
	}
	c.report(Event{Kind: Planned, Paths: len(todo), FileBytes: bytes})
	if len(todo) == 0 {
		return nil
	}
	entries, err := cachegraph.LoadDebugInfo(c.o.Src)
	if err != nil {
		return err
	}
	c.debug = map[string][]cachegraph.DebugEntry{}
	for _, e := range entries {
		if e.Archive != "" {
			c.debug[e.Archive] = append(c.debug[e.Archive], e)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pool.Each(ctx, c.o.Jobs, todo, func(p string) {
		if err := c.copyFiles(p); err != nil {
			cancel(err)
		}
	})
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if err := c.sync(); err != nil {
		return err
	}
	layers, err := order.Layers(todo, c.g.Refs)
	if err != nil {
		return fmt.Errorf("%s: %w", c.o.Src, err)
	}
	for _, layer := range layers {
		for _, p := range layer {
			e := c.g.Paths[p]
			if err := cachedir.WriteFile(cachedir.NarInfoPath(c.o.Dst, p), e.Raw, 0o644); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			c.stats.Copied++
			c.stats.FileBytes += e.Info.FileSize
			c.report(Event{Kind: Copied, Path: p, FileBytes: e.Info.FileSize})
		}
		if err := c.sync(); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) sync() error {
	if !c.o.Durable {
		return nil
	}
	c.stats.Syncs++
	return cachedir.SyncFS(c.o.Dst)
}

// copyFiles copies everything of p but its narinfo: the NAR, checked, its
// listing and the debuginfo entries pointing to the NAR that Dst lacks.
func (c *copier) copyFiles(p string) error {
	ni := c.g.Paths[p].Info
	url, err := cachegraph.CleanURL(ni.URL)
	if err != nil {
		return fmt.Errorf("%s: %w", c.g.Paths[p].File, err)
	}
	if err := c.copyNAR(p, url); err != nil {
		return err
	}
	if raw, err := cachedir.ReadRegular(cachedir.ListingPath(c.o.Src, p)); err == nil {
		if err := cachedir.WriteFile(cachedir.ListingPath(c.o.Dst, p), raw, 0o644); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := c.copyLogs(p); err != nil {
		return err
	}
	for _, e := range c.debug[url] {
		dst := filepath.Join(c.o.Dst, "debuginfo", e.Name)
		if _, err := os.Lstat(dst); err == nil {
			continue // as Nix: the same build ID may come with several paths
		}
		if err := cachedir.WriteFile(dst, e.Raw, 0o644); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// copyLogs copies the build logs of p that Dst lacks: its own if it is a
// derivation, and its Deriver's.
func (c *copier) copyLogs(p string) error {
	names := []string{c.g.Paths[p].Info.Deriver}
	if strings.HasSuffix(p, ".drv") {
		names = append(names, filepath.Base(p))
	}
	for _, name := range names {
		if !cachedir.LogName(name) {
			continue
		}
		dst := cachedir.LogPath(c.o.Dst, name)
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		in, err := cachedir.OpenRegular(cachedir.LogPath(c.o.Src, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		err = copyFile(in, dst)
		in.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// copyFile streams in to a new file published as dst.
func copyFile(in io.Reader, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := cachedir.Create(filepath.Dir(dst))
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Abort()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return tmp.Publish(dst, 0o644)
}

// copyNAR copies the NAR file at url, checking its size and hash against
// the narinfo as it streams; a NAR that Dst has with the right size is
// kept (it is named by its hash, and written atomically).
func (c *copier) copyNAR(p, url string) error {
	ni := c.g.Paths[p].Info
	dst := filepath.Join(c.o.Dst, url)
	if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() && uint64(fi.Size()) == ni.FileSize {
		return nil
	}
	want := ni.FileHash
	if want == nil && ni.Compression == "none" {
		want = ni.NarHash // the file is the NAR
	}
	if want == nil {
		return fmt.Errorf("%s: %s: no FileHash to check the NAR against", p, c.g.Paths[p].File)
	}
	if want.Algo() != nixhash.SHA256 {
		return fmt.Errorf("%s: %s: FileHash %s is not sha256", p, c.g.Paths[p].File, want.String())
	}
	src := filepath.Join(c.o.Src, url)
	in, err := cachedir.OpenRegular(src)
	if err != nil {
		return fmt.Errorf("%s: NAR: %w", p, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	tmp, err := cachedir.Create(filepath.Dir(dst))
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Abort()
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if err != nil {
		return fmt.Errorf("%s: copy %s: %w", p, src, err)
	}
	if ni.FileSize != 0 && uint64(n) != ni.FileSize {
		return fmt.Errorf("%s: %s is %d bytes, its narinfo says FileSize %d", p, src, n, ni.FileSize)
	}
	got := nixhash.MustNewHashWithEncoding(nixhash.SHA256, h.Sum(nil), nixhash.NixBase32, true)
	if string(got.Digest()) != string(want.Digest()) {
		return fmt.Errorf("%s: %s hashes to %s, its narinfo says %s", p, src, got.String(), want.Format(nixhash.NixBase32, true))
	}
	err = tmp.Publish(dst, 0o644)
	tmp = nil
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", p, dst, err)
	}
	return nil
}

func hasNarInfo(dir, p string) bool {
	_, err := os.Lstat(cachedir.NarInfoPath(dir, p))
	return err == nil
}

// sameDir reports whether a and b are the same directory (b may not exist).
func sameDir(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
