// Package cache writes a flat-file Nix binary cache: nix-cache-info, one
// narinfo per store path and the compressed NARs under nar/.
//
// A Writer runs in two parts. Workers dump, hash and compress each path in
// one pass into a temporary file, renamed to its content address once
// checked; a publisher writes each narinfo only after its NAR and the
// narinfos of all its references are in place (and durable, with
// Options.Durable). So at every moment, even after a SIGKILL or a power
// cut, every narinfo of the cache can be substituted with its closure.
package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// DefaultCompression is the compression of a zero Options.Compression, as
// nixpkgs' mkBinaryCache's.
const DefaultCompression = compress.Zstd

// Options say how to write a cache. StoreDir is required; every other
// field's zero value is its default.
type Options struct {
	StoreDir    string          // the store directory the paths live in
	Compression compress.Method // "": DefaultCompression
	// Level is compress.DefaultLevel (0), compress.LevelZero or a level of
	// Compression (compress.Level converts a tool's numbering).
	Level int
	// Jobs bounds the paths written at once, and Threads the goroutines one
	// path's encoder may use; 0 means the number of CPUs.
	Jobs, Threads int
	// XZProgram is an external xz(1) to compress xz chunks of
	// compress.XZProgramMinSize and more with, or "" for
	// the pure Go encoder (compress.Options.XZProgram).
	XZProgram     string
	Priority      int  // nix-cache-info Priority; 0 leaves it out
	WantMassQuery bool // nix-cache-info WantMassQuery
	// Upstream are store paths an upstream cache serves: references to
	// them count as present, and the cache is closed relative to that
	// upstream. The closure given to Write should not hold them.
	Upstream map[string]bool
	// Derivers adds Deriver lines for paths the closure has none for.
	Derivers map[string]string
	// NarListing writes <hashpart>.ls listings and IndexDebugInfo the
	// debuginfo/ index, as Nix's ?write-nar-listing=1 and ?index-debug-info=1.
	NarListing, IndexDebugInfo bool
	// Durable makes each NAR durable before its narinfo is published, and
	// every file before Write returns (batched syncfs): for caches kept
	// across power cuts, as the command line's are. Zero (false) syncs
	// nothing, which is right for a derivation's output: Nix makes it
	// durable when it registers it.
	Durable bool
	// LockWait bounds the wait for a cache that gc holds; 0 waits as long
	// as it takes.
	LockWait time.Duration
	// Sign, if not nil, is called with each narinfo before it is written,
	// so that a signed cache never shows an unsigned narinfo (it adds to
	// Signatures).
	Sign func(*narinfo.NarInfo) error
}

// Stats sum up a run.
type Stats struct {
	Paths, Skipped int
	NarBytes       uint64
	FileBytes      uint64
	Syncs          int // syncfs calls (Options.Durable)
	Elapsed        time.Duration
}

// EventKind says what an Event reports.
type EventKind int

// The events of a run, in the order a path goes through them.
const (
	// Planned: the run will write Paths paths of NarBytes bytes of NAR
	// (those not in the cache yet); once, first.
	Planned EventKind = iota
	// Skipped: Path's narinfo is in the cache already.
	Skipped
	// Started: Path's NAR is being written.
	Started
	// Progress: NarBytes more bytes of Path's NAR were dumped.
	Progress
	// Warning: Msg is something wrong with Path that does not stop the run.
	Warning
	// Written: Path's narinfo is published, its NAR NarBytes bytes,
	// compressed to FileBytes.
	Written
)

// Event is one step of a run, reported to the callback of Write.
type Event struct {
	Kind                EventKind
	Path                string
	Paths               int
	NarBytes, FileBytes uint64
	Msg                 string
}

// syncEvery is the least time between two syncfs of a run, unless the
// last NAR is in: a round publishes what arrived meanwhile.
const syncEvery = 50 * time.Millisecond

// progressStep is how many NAR bytes a Progress event reports at least.
const progressStep = 4 << 20

// Writer writes closures into one cache directory.
type Writer struct {
	dir string
	o   Options
	enc *compress.Encoder
}

// NewWriter checks o and prepares the encoder every path of a run shares.
func NewWriter(dir string, o Options) (*Writer, error) {
	if o.StoreDir == "" {
		return nil, errors.New("cache: no store directory")
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	enc, err := compress.NewEncoder(o.Compression, compress.Options{Level: o.Level, Threads: pool.Jobs(o.Threads),
		XZProgram: o.XZProgram})
	if err != nil {
		return nil, err
	}
	return &Writer{dir: dir, o: o, enc: enc}, nil
}

// Write adds every path of c to the cache. A path whose narinfo exists
// already is left as it is, so a cache can grow over several runs. report,
// if not nil, is called with each event, from one goroutine at a time.
func (w *Writer) Write(ctx context.Context, c closure.Closure, report func(Event)) (Stats, error) {
	start := time.Now()
	d, err := cachedir.Ensure(w.dir)
	if err != nil {
		return Stats{}, err
	}
	defer d.Close()
	lock, err := d.Lock(ctx, cachedir.Shared, w.o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()
	if !lock.Supported() && report != nil {
		report(Event{Kind: Warning, Path: w.dir, Msg: cachedir.UnlockedWarning("what this run adds")})
	}
	// Nothing is written through a symlink: a layout directory or a file
	// in the way that is one stops the run, named.
	if err := d.Init(cachedir.Info{StoreDir: w.o.StoreDir, Priority: w.o.Priority, WantMassQuery: w.o.WantMassQuery}); err != nil {
		return Stats{}, err
	}
	tree := w.o.NarListing || w.o.IndexDebugInfo // the walk yields the listing
	r := &run{Writer: w, d: d, report: report, published: map[string]bool{},
		dumpers: sync.Pool{New: func() any { return &nardump.Dumper{Tree: tree} }}}
	if report == nil {
		r.report = func(Event) {}
	}
	stats, err := r.write(ctx, c)
	stats.Elapsed = time.Since(start)
	return stats, err
}

// run is one Write: the state its workers and publisher share.
type run struct {
	*Writer
	d         *cachedir.Dir
	mu        sync.Mutex // report, called by workers and the publisher
	report    func(Event)
	stats     Stats           // the publisher's
	published map[string]bool // store paths whose narinfo is in place: the publisher's
	dumpers   sync.Pool       // *nardump.Dumper, one per worker at a time
}

func (r *run) emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.report(e)
}

// written is a path whose NAR is in place, waiting for its narinfo.
type written struct {
	p  closure.Path
	ni *narinfo.NarInfo
}

func (r *run) write(ctx context.Context, c closure.Closure) (Stats, error) {
	var todo closure.Closure
	var todoBytes uint64
	for _, p := range c {
		has, err := r.d.Has(cachedir.NarInfoName(p.StorePath))
		if err != nil {
			return r.stats, err
		}
		if has {
			r.published[p.StorePath] = true
			r.stats.Paths++
			r.stats.Skipped++
			r.report(Event{Kind: Skipped, Path: p.StorePath})
			continue
		}
		todo = append(todo, p)
		todoBytes += p.NarSize
	}
	r.report(Event{Kind: Planned, Paths: len(todo), NarBytes: todoBytes})

	// Largest first, so that one big path does not start last and serialise
	// the end of the run.
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].NarSize > todo[j].NarSize })

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ready := make(chan written, len(todo))
	go func() {
		pool.Each(ctx, r.o.Jobs, todo, func(p closure.Path) {
			ni, err := r.writeNAR(ctx, p)
			if err != nil {
				cancel(err)
				return
			}
			ready <- written{p, ni}
		})
		close(ready)
	}()
	err := r.publish(ctx, ready, len(todo))
	if err != nil {
		cancel(err)
	}
	// Let the workers stop before returning: they write into the cache.
	for range ready {
	}
	if cause := context.Cause(ctx); err == nil && cause != nil {
		err = cause
	}
	return r.stats, err
}

// publish writes the narinfos of the paths from ready, each once its
// references' narinfos are in place, in rounds: a round takes every path
// that arrived since the last one, makes the NARs durable with one syncfs
// (Options.Durable), and publishes what it can. With durability, a narinfo
// published in a round counts for its referrers only from the next round,
// after the syncfs that makes it durable.
func (r *run) publish(ctx context.Context, ready <-chan written, n int) error {
	var pending []written
	var fresh []string // published in the last round, not yet durable
	var lastSync time.Time
	received := 0
	for received < n || len(pending) > 0 {
		if received < n {
			// With durability, gather for at least syncEvery since the
			// last syncfs, so that many small paths share one.
			var due <-chan time.Time
			if r.o.Durable {
				due = time.After(time.Until(lastSync.Add(syncEvery)))
			}
			before := len(pending)
			var err error
			if pending, err = gather(ctx, ready, pending, n-received, due); err != nil {
				return err
			}
			received += len(pending) - before
		}
		if r.o.Durable {
			// A syncfs only when it lets a narinfo out: one per level of
			// the reference graph, whatever order the NARs come in.
			if !r.anyReady(pending, fresh) {
				if received == n {
					return danglingErr(pending)
				}
				continue
			}
			if err := r.sync(); err != nil {
				return err
			}
			lastSync = time.Now()
			for _, p := range fresh {
				r.published[p] = true
			}
		}
		before := len(pending)
		var err error
		pending, fresh, err = r.publishReady(pending)
		if err != nil {
			return err
		}
		if received == n && len(pending) == before && len(fresh) == 0 {
			return danglingErr(pending)
		}
	}
	if r.o.Durable && len(fresh) > 0 {
		return r.sync()
	}
	return nil
}

// gather appends to pending at most left paths from ready: the first one
// it waits for, then those that arrive until due, or with due nil those
// already waiting.
func gather(ctx context.Context, ready <-chan written, pending []written, left int, due <-chan time.Time) ([]written, error) {
	for first := true; left > 0; first = false {
		var w written
		var ok bool
		switch {
		case first:
			select {
			case w, ok = <-ready:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		case due != nil:
			select {
			case w, ok = <-ready:
			case <-due:
				return pending, nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		default:
			select {
			case w, ok = <-ready:
			default:
				return pending, nil
			}
		}
		if !ok { // the workers stopped: an error cancelled ctx
			return nil, context.Cause(ctx)
		}
		pending = append(pending, w)
		left--
	}
	return pending, nil
}

func danglingErr(pending []written) error {
	return fmt.Errorf("%s: a reference is neither in the closure, nor in the cache, nor served upstream", pending[0].p.StorePath)
}

// anyReady reports whether a pending path's references are all published
// or in fresh.
func (r *run) anyReady(pending []written, fresh []string) bool {
	justNow := make(map[string]bool, len(fresh))
	for _, p := range fresh {
		justNow[p] = true
	}
	for _, w := range pending {
		if r.refsPublished(w.p, justNow) {
			return true
		}
	}
	return false
}

func (r *run) sync() error {
	r.stats.Syncs++
	return r.d.SyncFS()
}

// publishReady writes the narinfo of each pending path whose references are
// published, and returns the rest and those it wrote. Without durability,
// what it writes counts at once, so a chain is published in one call.
func (r *run) publishReady(pending []written) (rest []written, fresh []string, err error) {
	for {
		progress := false
		rest = pending[:0:0]
		for _, w := range pending {
			if !r.refsPublished(w.p, nil) {
				rest = append(rest, w)
				continue
			}
			if err := r.d.WriteFile(cachedir.NarInfoName(w.p.StorePath), []byte(w.ni.String()), 0o644); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", w.p.StorePath, err)
			}
			progress = true
			if r.o.Durable {
				fresh = append(fresh, w.p.StorePath)
			} else {
				r.published[w.p.StorePath] = true
			}
			r.stats.Paths++
			r.stats.NarBytes += w.ni.NarSize
			r.stats.FileBytes += w.ni.FileSize
			r.emit(Event{Kind: Written, Path: w.p.StorePath, NarBytes: w.ni.NarSize, FileBytes: w.ni.FileSize})
		}
		pending = rest
		if !progress || r.o.Durable {
			return rest, fresh, nil
		}
	}
}

// refsPublished reports whether p's references are published, or in also.
func (r *run) refsPublished(p closure.Path, also map[string]bool) bool {
	for _, ref := range p.References {
		if ref != p.StorePath && !r.published[ref] && !also[ref] && !r.o.Upstream[ref] {
			return false
		}
	}
	return true
}

// countingHash hashes and counts what is written through it.
type countingHash struct {
	hash.Hash
	n uint64
}

func (h *countingHash) Write(p []byte) (int, error) {
	h.n += uint64(len(p))
	return h.Hash.Write(p)
}

func newHash() *countingHash { return &countingHash{Hash: sha256.New()} }

func (h *countingHash) nix32() *nixhash.HashWithEncoding {
	return nixhash.MustNewHashWithEncoding(nixhash.SHA256, h.Sum(nil), nixhash.NixBase32, true)
}

// narInfo checks what was dumped against what Nix recorded, and describes
// the NAR, stored under its file hash (URL).
func (r *run) narInfo(p closure.Path, narHash, fileHash *countingHash) (*narinfo.NarInfo, error) {
	gotNar := narHash.nix32()
	if p.NarSize != 0 && p.NarSize != narHash.n {
		return nil, fmt.Errorf("%s: NAR size mismatch: Nix recorded %d bytes, the path dumps to %d (store corrupted or modified?)", p.StorePath, p.NarSize, narHash.n)
	}
	if p.NarHash != nil {
		want := nixhash.MustNewHashWithEncoding(p.NarHash.Algo(), p.NarHash.Digest(), nixhash.NixBase32, true)
		if want.String() != gotNar.String() {
			return nil, fmt.Errorf("%s: NAR hash mismatch: Nix recorded %s, the path dumps to %s (store corrupted or modified?)", p.StorePath, want, gotNar)
		}
	}
	fileNix32 := gotNar
	if fileHash != narHash {
		fileNix32 = fileHash.nix32()
	}
	ni := &narinfo.NarInfo{
		StorePath:   p.StorePath,
		URL:         "nar/" + fileNix32.Format(nixhash.NixBase32, false) + ".nar" + r.o.Compression.Ext(),
		Compression: string(r.o.Compression),
		FileHash:    fileNix32,
		FileSize:    fileHash.n,
		NarHash:     gotNar,
		NarSize:     narHash.n,
		CA:          p.CA,
	}
	for _, ref := range p.References {
		ni.References = append(ni.References, filepath.Base(ref))
	}
	deriver := p.Deriver
	if deriver == "" {
		deriver = r.o.Derivers[p.StorePath]
	}
	if deriver != "" {
		ni.Deriver = filepath.Base(deriver)
	}
	if ni.CA == "" && len(ni.References) == 0 {
		ni.CA = inferCA(ni, r.o.StoreDir)
	}
	return ni, nil
}

// inferCA recovers the content address of a path imported by
// builtins.path, nix-store --add or a recursive fixed-output derivation,
// which the legacy graph and closureInfo formats do not carry: its store
// path is computed from its NAR hash. Clients accept such paths unsigned.
func inferCA(ni *narinfo.NarInfo, storeDir string) string {
	candidate := *ni
	candidate.CA = "fixed:r:" + ni.NarHash.Format(nixhash.NixBase32, true)
	if ok, err := narinfo.ContentAddressed(&candidate, storeDir); err == nil && ok {
		return candidate.CA
	}
	return ""
}
