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
//
// Nothing invalid is copied: an entry of the source the cache may not hold
// (a symlink, a file that is not regular, a narinfo Nix rejects, a listing
// or debuginfo entry that does not parse) is skipped and reported, and
// Copy then fails with ErrInvalid once the rest is copied. In the
// destination, an entry in the way that is not a regular file or a real
// directory stops the copy, named: nothing is written through it.
package cachecopy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/order"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
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
	// LockWait bounds the wait for a gc holding either cache; 0 waits as
	// long as it takes.
	LockWait time.Duration
	Jobs     int // NARs copied at once; 0: the number of CPUs
	// Served, if not nil, says which of some store paths an upstream
	// cache serves: those are not copied, and Src may lack them (it is
	// closed relative to the upstream). Only paths Dst lacks are asked.
	Served func(ctx context.Context, paths []string) (map[string]bool, error)
}

// ErrSameCache is returned when Dst is Src or a directory inside it.
var ErrSameCache = errors.New("the destination is the same cache as the source, or inside it")

// ErrInvalid is returned (wrapped) when invalid entries of Src were
// skipped.
var ErrInvalid = errors.New("invalid entries of the source were skipped")

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
	// Invalid: Path is an entry of Src the cache may not hold, Msg what is
	// wrong with it; it was not copied.
	Invalid
	// Warning: Msg is something wrong that the copy went on past.
	Warning
)

// Event is one step of a copy.
type Event struct {
	Kind      EventKind
	Path      string
	Msg       string
	Paths     int
	FileBytes uint64
}

// Stats sum up a copy.
type Stats struct {
	Paths, Copied, Skipped int
	Invalid                int    // invalid entries of Src skipped
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
	src, err := cachedir.Open(o.Src)
	if err != nil {
		return Stats{}, err
	}
	defer src.Close()
	info, err := src.RequireInfo()
	if err != nil {
		return Stats{}, err
	}
	if in, err := inside(src, o.Dst); err != nil {
		return Stats{}, err
	} else if in {
		return Stats{}, fmt.Errorf("%s and %s: %w", o.Src, o.Dst, ErrSameCache)
	}
	// Two shared locks wait for nothing but a gc, which holds one cache
	// only: no cycle of waits can form. The source's lock is taken
	// read-only, without the stale-file cleanup that would change it.
	srcLock, err := src.Lock(ctx, cachedir.ReadOnly, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer srcLock.Release()
	dst, err := cachedir.Ensure(o.Dst)
	if err != nil {
		return Stats{}, err
	}
	defer dst.Close()
	lock, err := dst.Lock(ctx, cachedir.Shared, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()
	if !lock.Supported() {
		report(Event{Kind: Warning, Path: o.Dst, Msg: cachedir.UnlockedWarning("what this copy adds")})
	}

	g, err := cachegraph.Load(ctx, src, o.Jobs)
	if err != nil {
		return Stats{}, err
	}
	c := &copier{o: o, src: src, dst: dst, g: g, report: report}
	for _, err := range append(src.CheckLayout(), g.Invalid...) {
		c.invalid(err)
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
		return c.stats, err
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
			if has, _ := dst.Has(cachedir.NarInfoName(p)); !has {
				ask = append(ask, p)
			}
		}
		for _, m := range missing {
			ask = append(ask, m.Path)
		}
		served, err := o.Served(ctx, ask)
		if err != nil {
			return c.stats, err
		}
		if want, missing, err = g.Closure(roots, o.BuildClosure, func(p string) bool { return served[p] }); err != nil {
			return c.stats, err
		}
	}
	// A reference whose narinfo is invalid (reported above) takes its
	// referrers out of the copy; one without any narinfo is an error.
	invalid := map[string]bool{}
	for _, err := range g.Invalid {
		if rel, ok := src.Rel(err); ok {
			invalid[rel] = true
		}
	}
	var names []string
	bad := map[string]bool{}
	for _, m := range missing {
		if invalid[cachedir.NarInfoName(m.Path)] {
			bad[m.Path] = true
		} else {
			names = append(names, m.String())
		}
	}
	if len(names) > 0 {
		return c.stats, fmt.Errorf("%s is not closed: no valid narinfo (nor one upstream) for %s", o.Src, strings.Join(names, ", "))
	}
	for changed := len(bad) > 0; changed; {
		changed = false
		for _, p := range slices.Sorted(maps.Keys(want)) {
			if i := slices.IndexFunc(g.Refs(p), func(r string) bool { return bad[r] }); i >= 0 {
				report(Event{Kind: Warning, Path: p, Msg: "not copied: its reference " + g.Refs(p)[i] + " has an invalid narinfo"})
				delete(want, p)
				bad[p] = true
				changed = true
			}
		}
	}
	if err := dst.Init(info); err != nil {
		return c.stats, err
	}
	c.stats.Paths = len(want)
	err = c.run(ctx, want)
	c.stats.Elapsed = time.Since(start)
	if err == nil && c.stats.Invalid > 0 {
		err = fmt.Errorf("%s: %d %w", o.Src, c.stats.Invalid, ErrInvalid)
	}
	return c.stats, err
}

type copier struct {
	o        Options
	src, dst *cachedir.Dir
	g        *cachegraph.Graph
	debug    map[string][]cachegraph.DebugEntry // Src's, by NAR URL
	mu       sync.Mutex                         // report and stats, from copyFiles
	stats    Stats
	report   func(Event)
}

// invalid reports an invalid entry of Src, skipped.
func (c *copier) invalid(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Invalid++
	var ee *cachedir.EntryError
	if errors.As(err, &ee) {
		c.report(Event{Kind: Invalid, Path: cachedir.Printable(ee.Name), Msg: ee.What})
		return
	}
	c.report(Event{Kind: Invalid, Msg: err.Error()})
}

func (c *copier) run(ctx context.Context, want map[string]bool) error {
	var todo []string
	var bytes uint64
	for _, p := range slices.Sorted(maps.Keys(want)) {
		has, err := c.dst.Has(cachedir.NarInfoName(p))
		if err != nil {
			return err
		}
		if has {
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
	entries, invalid, err := cachegraph.LoadDebugInfo(c.src)
	if err != nil {
		return err
	}
	for _, err := range invalid {
		c.invalid(err)
	}
	c.debug = map[string][]cachegraph.DebugEntry{}
	for _, e := range entries {
		c.debug[e.Archive] = append(c.debug[e.Archive], e)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bad := map[string]bool{} // paths not copied for what Src holds
	var mu sync.Mutex
	pool.Each(ctx, c.o.Jobs, todo, func(p string) {
		err := c.copyFiles(p)
		var se *srcError
		switch {
		case errors.As(err, &se):
			c.mu.Lock()
			c.stats.Invalid++
			c.report(Event{Kind: Invalid, Path: p, Msg: se.err.Error()})
			c.mu.Unlock()
			mu.Lock()
			bad[p] = true
			mu.Unlock()
		case err != nil:
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
			if bad[p] {
				continue
			}
			// Referrers first go with what they refer to: no narinfo is
			// published without its closure.
			if r := slices.IndexFunc(c.g.Refs(p), func(r string) bool { return bad[r] }); r >= 0 {
				bad[p] = true
				c.report(Event{Kind: Warning, Path: p, Msg: "not copied: its reference " + c.g.Refs(p)[r] + " was not"})
				continue
			}
			e := c.g.Paths[p]
			if err := c.dst.WriteFile(cachedir.NarInfoName(p), e.Raw, 0o644); err != nil {
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
	return c.dst.SyncFS()
}

// copyFiles copies everything of p but its narinfo: the NAR, checked, its
// listing (when it parses) and the debuginfo entries pointing to the NAR
// that Dst lacks.
func (c *copier) copyFiles(p string) error {
	url := c.g.NAR(p)
	if err := c.copyNAR(p, url); err != nil {
		return err
	}
	ls := cachedir.ListingName(p)
	raw, err := c.src.ReadFile(ls)
	if err == nil {
		if _, perr := listing.Parse(raw); perr != nil {
			err = &cachedir.EntryError{Name: c.src.Name(ls), What: perr.Error()}
		}
	}
	switch {
	case err == nil:
		if err := c.dst.WriteFile(ls, raw, 0o644); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	case errors.Is(err, cachedir.ErrInvalidEntry):
		c.invalid(err)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := c.copyLogs(p); err != nil {
		return err
	}
	for _, e := range c.debug[url] {
		name := "debuginfo/" + e.Name
		if has, err := c.dst.Has(name); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		} else if has {
			continue // as Nix: the same build ID may come with several paths
		}
		if err := c.dst.WriteFile(name, e.Raw, 0o644); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// copyLogs copies the build logs of p that Dst lacks: its own if it is a
// derivation, and its Deriver's, streamed. An invalid one is skipped and
// reported.
func (c *copier) copyLogs(p string) error {
	names := []string{c.g.Paths[p].Info.Deriver}
	if strings.HasSuffix(p, ".drv") {
		names = append(names, filepath.Base(p))
	}
	for _, name := range names {
		if !cachedir.LogName(name) {
			continue
		}
		log := cachedir.LogFile(name)
		if has, err := c.dst.Has(log); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		} else if has {
			continue
		}
		in, err := c.src.Open(log)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case errors.Is(err, cachedir.ErrInvalidEntry):
			c.invalid(err)
			continue
		case err != nil:
			return fmt.Errorf("%s: %w", p, err)
		}
		err = c.copyFile(in, log)
		in.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// copyFile streams in to a new file of Dst published as rel.
func (c *copier) copyFile(in io.Reader, rel string) error {
	tmp, err := c.dst.Create(path.Dir(rel))
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Abort()
		return fmt.Errorf("write %s: %w", c.dst.Name(rel), err)
	}
	return tmp.Publish(path.Base(rel), 0o644)
}

// srcError is a problem of a path in Src (its NAR missing, not a regular
// file, or not what its narinfo says): the path is skipped, not the copy.
type srcError struct{ err error }

func (e *srcError) Error() string { return e.err.Error() }
func (e *srcError) Unwrap() error { return e.err }

// copyNAR copies the NAR file at url, checking its size and hash against
// the narinfo as it streams. A NAR that Dst has is kept only if it hashes
// as the narinfo says; else it is replaced.
func (c *copier) copyNAR(p, url string) error {
	ni := c.g.Paths[p].Info
	src := c.src.Name(url)
	want := ni.FileHash
	if want == nil && ni.Compression == "none" {
		want = ni.NarHash // the file is the NAR
	}
	if want == nil {
		return &srcError{fmt.Errorf("%s: no FileHash to check the NAR against", c.src.Name(c.g.Paths[p].File))}
	}
	if want.Algo() != nixhash.SHA256 {
		return &srcError{fmt.Errorf("%s: FileHash %s is not sha256", c.src.Name(c.g.Paths[p].File), want.String())}
	}
	check := func(n int64, sum []byte) error {
		if ni.FileSize != 0 && uint64(n) != ni.FileSize {
			return &srcError{fmt.Errorf("%s is %d bytes, its narinfo says FileSize %d", src, n, ni.FileSize)}
		}
		got := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum, nixhash.NixBase32, true)
		if string(got.Digest()) != string(want.Digest()) {
			return &srcError{fmt.Errorf("%s hashes to %s, its narinfo says %s", src, got.String(), want.Format(nixhash.NixBase32, true))}
		}
		return nil
	}
	if has, err := c.dst.Has(url); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	} else if has {
		if f, err := c.dst.Open(url); err == nil {
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err == nil && check(n, h.Sum(nil)) == nil {
				return nil
			}
		}
		// Corrupt, or unreadable: replaced below.
	}
	in, err := c.src.Open(url)
	if errors.Is(err, cachedir.ErrInvalidEntry) || errors.Is(err, os.ErrNotExist) {
		return &srcError{fmt.Errorf("NAR: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("%s: NAR: %w", p, err)
	}
	defer in.Close()
	tmp, err := c.dst.Create("nar")
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
	if err := check(n, h.Sum(nil)); err != nil {
		return err
	}
	err = tmp.Publish(filepath.Base(url), 0o644)
	tmp = nil
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", p, c.dst.Name(url), err)
	}
	return nil
}

// inside reports whether the directory dst (which may not exist yet) is
// the cache src or a directory inside it, judged by the directories
// themselves: dst and each of its parents that exists.
func inside(src *cachedir.Dir, dst string) (bool, error) {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return false, err
	}
	for p := abs; ; p = filepath.Dir(p) {
		if d, err := cachedir.Open(p); err == nil {
			same, err := src.SameAs(d)
			d.Close()
			if err != nil || same {
				return same, err
			}
		}
		if p == filepath.Dir(p) {
			return false, nil
		}
	}
}
