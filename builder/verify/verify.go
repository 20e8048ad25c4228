// Package verify checks a flat-file binary cache the way a Nix client
// would use it, and more: every narinfo parses (as Nix parses it, up to
// narinfo.MaxSize bytes), its NAR exists with the recorded FileSize and FileHash, decompresses
// to NarSize bytes hashing to NarHash and is a well-formed NAR, every
// reference has a narinfo, listings match their NARs, and, when keys are
// given, each narinfo carries a valid signature by one of them (or, as Nix
// accepts, a content address that proves its store path).
//
// NARs are streamed (file -> hash -> decompressor -> hash -> NAR parser),
// never held in memory, parsed down to listing.MaxDepth, and narinfos are
// checked in parallel.
package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/narcheck"
	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"

	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
)

// Options say what to check.
type Options struct {
	Dir string
	// StoreDir is the store the cache is for; "" for the one nix-cache-info
	// names (else /nix/store). A StoreDir that contradicts it is an error.
	StoreDir string
	// PublicKeys, when any, must have made a valid signature of each narinfo.
	PublicKeys []signature.PublicKey
	Jobs       int // narinfos checked at once; 0 for the number of CPUs
	// Served, if not nil, is asked (once, for all) about the references
	// without a narinfo here: those an upstream cache serves are no
	// problem, the cache being closed relative to it.
	Served func(ctx context.Context, paths []string) (map[string]bool, error)
	// LockWait bounds the wait for a gc holding the cache; 0 waits as long
	// as it takes. verify holds the read-only lock: run beside a gc, it
	// would report what the gc is removing.
	LockWait time.Duration
}

// Problem is one thing wrong with the cache, found in File (a path under
// the cache directory).
type Problem struct {
	File string
	Msg  string
}

func (p Problem) String() string { return p.File + ": " + p.Msg }

// Stats sum up a check.
type Stats struct {
	NarInfos  int // narinfos checked
	Bad       int // files with at least one problem
	Problems  int
	NarBytes  uint64 // uncompressed bytes read
	FileBytes uint64 // compressed bytes read
}

// Cache checks the cache at o.Dir, calling report for each problem; the
// problems of one file are reported together, from one goroutine at a time.
// The error is for what stopped the check itself (an unreadable directory,
// cancellation), not for problems of the cache.
func Cache(ctx context.Context, o Options, report func(Problem)) (Stats, error) {
	var stats Stats
	var mu sync.Mutex
	bad := map[string]bool{}
	emit := func(file string, msgs []string) {
		if len(msgs) == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !bad[file] {
			bad[file] = true
			stats.Bad++
		}
		stats.Problems += len(msgs)
		for _, m := range msgs {
			report(Problem{File: file, Msg: m})
		}
	}

	emitErr := func(err error) {
		var ee *cachedir.EntryError
		if errors.As(err, &ee) {
			emit(cachedir.Printable(ee.Name), []string{ee.What})
		} else {
			emit(o.Dir, []string{err.Error()})
		}
	}
	d, err := cachedir.Open(o.Dir)
	if err != nil {
		return stats, err
	}
	defer d.Close()
	lock, err := d.Lock(ctx, cachedir.ReadOnly, o.LockWait)
	if err != nil {
		return stats, err
	}
	defer lock.Release()
	storeDir, err := cachedir.ResolveStoreDir(o.Dir, o.StoreDir)
	if err != nil {
		return stats, err
	}
	if info, _, err := d.ReadInfo(); err != nil {
		emitErr(err)
	} else if info.StoreDir == "" {
		emit(d.Name(cachedir.InfoFile), []string{"missing, or without StoreDir (Nix needs it to use the cache)"})
	}
	for _, err := range d.CheckLayout() {
		emitErr(err)
	}
	files, invalid, err := d.NarInfos()
	if err != nil {
		return stats, err
	}
	for _, err := range invalid {
		emitErr(err)
	}
	have := make(map[string]bool, len(files))
	for _, f := range files {
		have[strings.TrimSuffix(f, ".narinfo")] = true
	}
	c := checker{d: d, storeDir: storeDir, keys: o.PublicKeys, have: have, deferRefs: o.Served != nil}
	missing := map[string][]string{} // file -> references without a narinfo

	pool.Each(ctx, o.Jobs, files, func(f string) {
		r := c.narInfo(ctx, f)
		if ctx.Err() != nil {
			return // read errors of a cancelled check are no problems
		}
		mu.Lock()
		stats.NarInfos++
		stats.NarBytes += r.narBytes
		stats.FileBytes += r.fileBytes
		if len(r.missing) > 0 {
			missing[d.Name(f)] = r.missing
		}
		mu.Unlock()
		emit(d.Name(f), r.problems)
	})
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if err := c.upstreamRefs(ctx, o, missing, emit); err != nil {
		return stats, err
	}
	if err := debugInfo(d, emit, emitErr); err != nil {
		return stats, err
	}
	if err := logs(d, emit, emitErr); err != nil {
		return stats, err
	}
	return stats, nil
}

type checker struct {
	deferRefs bool // references without a narinfo go to result.missing
	d         *cachedir.Dir
	storeDir  string
	keys      []signature.PublicKey
	have      map[string]bool // hash parts with a narinfo
}

type result struct {
	problems            []string
	missing             []string // full store paths, with checker.deferRefs
	narBytes, fileBytes uint64
}

func (r *result) add(format string, a ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, a...))
}

func (c *checker) narInfo(ctx context.Context, file string) (r result) {
	data, err := c.d.ReadFileMax(file, narinfo.MaxSize)
	if err != nil {
		var ee *cachedir.EntryError
		if errors.As(err, &ee) {
			r.add("read narinfo: %s", ee.What)
		} else {
			r.add("read narinfo: %v", err)
		}
		return r
	}
	ni, badSigs, err := narinfo.Parse(data)
	if err != nil {
		r.add("Nix refuses it: %v", err)
		return r
	}
	for _, s := range badSigs {
		name, _, _ := strings.Cut(s, ":")
		r.add("signature by %s is not an Ed25519 signature", printable(name))
	}
	hashPart := strings.TrimSuffix(file, ".narinfo")
	c.storePath(&r, ni, hashPart)
	c.refs(&r, ni)
	c.sigs(&r, ni)
	// Nix does without them; a NAR could not be checked.
	if ni.FileHash == nil {
		r.add("no FileHash")
	}
	if ni.FileSize == 0 {
		r.add("no FileSize")
	}
	c.nar(ctx, &r, ni, hashPart)
	return r
}

// printable is s if it is short and plain, else a placeholder: a key
// name from a hostile file is shown, but not any bytes it likes.
func printable(s string) string {
	if len(s) > 100 || strings.IndexFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return "a key with an unprintable name"
	}
	return s
}

// storePath checks what Parse cannot know: the store directory, and that
// the narinfo is the one of its file (Parse checked the base names).
func (c *checker) storePath(r *result, ni *narinfo.NarInfo, hashPart string) {
	if dir := path.Dir(ni.StorePath); dir != c.storeDir {
		r.add("StorePath %q is not in the store directory %s", ni.StorePath, c.storeDir)
	}
	if narinfo.HashPart(ni.StorePath) != hashPart {
		r.add("StorePath %s does not belong to this narinfo file (hash part %s)", ni.StorePath, hashPart)
	}
}

func (c *checker) refs(r *result, ni *narinfo.NarInfo) {
	for _, ref := range ni.References {
		if !c.have[narinfo.HashPart(ref)] {
			if c.deferRefs {
				r.missing = append(r.missing, c.storeDir+"/"+ref)
			} else {
				r.add("reference %s has no narinfo in the cache", ref)
			}
		}
	}
}

// upstreamRefs asks upstream about the references without a narinfo here,
// once for all, and reports those it does not serve.
func (c *checker) upstreamRefs(ctx context.Context, o Options, missing map[string][]string, emit func(string, []string)) error {
	if len(missing) == 0 {
		return nil
	}
	var ask []string
	for _, refs := range missing {
		ask = append(ask, refs...)
	}
	served, err := o.Served(ctx, ask)
	if err != nil {
		return err
	}
	files := make([]string, 0, len(missing))
	for f := range missing {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		var msgs []string
		for _, p := range missing[f] {
			if !served[p] {
				msgs = append(msgs, fmt.Sprintf("reference %s has no narinfo in the cache, nor upstream", path.Base(p)))
			}
		}
		emit(f, msgs)
	}
	return nil
}

// logs reports the entries of log/ that are not a derivation's build log:
// Nix reads log/<drv base name> only.
func logs(d *cachedir.Dir, emit func(string, []string), emitErr func(error)) error {
	names, invalid, err := d.Logs()
	if err != nil {
		return err
	}
	for _, err := range invalid {
		emitErr(err)
	}
	for _, rel := range names {
		name := path.Base(rel)
		if !cachedir.LogName(name) {
			emit(cachedir.Printable(d.Name(rel)), []string{"a build log whose name is not a derivation's (log/<hash>-<name>.drv)"})
		}
	}
	return nil
}

func (c *checker) sigs(r *result, ni *narinfo.NarInfo) {
	if len(c.keys) == 0 {
		return
	}
	valid, err := sign.Valid(ni, c.keys, c.storeDir)
	if err != nil {
		r.add("cannot check signatures: %v", err)
		return
	}
	if len(valid) > 0 {
		return
	}
	// Nix trusts a path its content address proves, signed or not.
	if ok, _ := narinfo.ContentAddressed(ni, c.storeDir); ok {
		return
	}
	names := map[string]bool{}
	for _, k := range c.keys {
		names[k.Name] = true
	}
	var invalid, others []string
	for _, s := range ni.Signatures {
		if names[s.Name] {
			invalid = append(invalid, s.Name)
		} else {
			others = append(others, s.Name)
		}
	}
	switch {
	case len(invalid) > 0:
		r.add("signature by %s does not verify (narinfo changed after signing, or another key of that name)", strings.Join(invalid, ", "))
	case len(others) > 0:
		r.add("no signature by a given key (signed only by %s)", strings.Join(others, ", "))
	default:
		r.add("not signed")
	}
}

func (c *checker) nar(ctx context.Context, r *result, ni *narinfo.NarInfo, hashPart string) {
	u := ni.URL
	if _, err := cachedir.NarFile(u); err != nil {
		r.add("%v", err)
		return
	}
	f, err := c.d.Open(u)
	if errors.Is(err, os.ErrNotExist) {
		r.add("NAR %s is missing", u)
		return
	} else if err != nil {
		r.add("NAR %s: %v", u, err)
		return
	}
	defer f.Close()
	var root *listing.Node
	sizes, err := narcheck.Read(ctx, f, ni, func(nar io.Reader) (err error) {
		root, err = listing.Read(nar)
		return err
	})
	r.narBytes, r.fileBytes = sizes.Nar, sizes.File
	for _, err := range joined(err) {
		r.add("NAR %s: %v", u, err)
	}
	if root != nil {
		c.listing(r, root, hashPart)
		if msg := nardump.DepthProblem(root.Depth()); msg != "" {
			r.add("NAR %s: %s", u, msg)
		}
	}
}

// joined is the errors err joins, or err alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// listing compares <hashPart>.ls, when there is one, with the NAR: byte for
// byte as this tool and Nix 2.8 write it, else as JSON values (other
// writers may order keys differently).
func (c *checker) listing(r *result, root *listing.Node, hashPart string) {
	name := hashPart + ".ls"
	f, err := c.d.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return
	} else if err != nil {
		r.add("listing %s: %v", name, err)
		return
	}
	defer f.Close()
	ours := listing.JSON(root)
	// Another writer may indent its JSON, but a listing far larger than
	// this NAR's is not read whole.
	limit := 16*int64(len(ours)) + 1<<20
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		r.add("listing %s: %v", name, err)
		return
	}
	if int64(len(data)) > limit {
		r.add("listing %s is larger than %d bytes, far more than its NAR's listing", name, limit)
		return
	}
	if bytes.Equal(data, ours) {
		return
	}
	theirs, err := listing.Parse(data)
	if err != nil {
		r.add("listing %s does not parse: %v", name, err)
		return
	}
	want, err := listing.Parse(ours)
	if err != nil {
		r.add("listing %s: %v", name, err)
		return
	}
	if !bytes.Equal(listing.JSON(theirs), listing.JSON(want)) {
		r.add("listing %s does not match the NAR", name)
	}
}

// debugInfo checks that every debuginfo/ entry parses and names a NAR of
// the cache.
func debugInfo(d *cachedir.Dir, emit func(string, []string), emitErr func(error)) error {
	entries, invalid, err := cachegraph.LoadDebugInfo(d)
	if err != nil {
		return err
	}
	for _, err := range invalid {
		emitErr(err)
	}
	for _, e := range entries {
		switch has, err := d.Has(e.Archive); {
		case err != nil:
			emit(d.Name("debuginfo/"+e.Name), []string{fmt.Sprintf("archive ../%s: %v", e.Archive, err)})
		case !has:
			emit(d.Name("debuginfo/"+e.Name), []string{fmt.Sprintf("archive ../%s is missing", e.Archive)})
		}
	}
	return nil
}
