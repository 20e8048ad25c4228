package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// Outcome is what SignDir did to one narinfo.
type Outcome int

// The outcomes of SignDir.
const (
	Added    Outcome = iota // a signature was added
	Present                 // a valid signature by the key was there already
	Replaced                // an invalid signature by the key was replaced (DirOptions.ReplaceInvalid)
)

// entry is one narinfo of the cache being signed.
type entry struct {
	file string // relative to the cache
	data []byte
	ni   *narinfo.NarInfo
	sig  signature.Signature // the key's signature of it
	err  error
	// present: a valid signature by the key is there; invalid: one by
	// the key's name that does not verify is.
	present, invalid bool
}

// read reads and parses the narinfo file of the cache d (an invalid one: a
// symlink, misnamed, rejected by Nix's parser, naming no NAR, is refused)
// and finds what the key signed.
func read(d *cachedir.Dir, file string, key signature.SecretKey, storeDir string) *entry {
	e := &entry{file: file}
	e.data, e.ni, e.err = d.ReadNarInfo(file, storeDir)
	if e.err != nil {
		return e
	}
	if e.sig, e.err = Sign(e.ni, key, storeDir); e.err != nil {
		e.err = fmt.Errorf("%s: %w", d.Name(file), e.err)
		return e
	}
	pub := key.ToPublicKey()
	valid, err := Valid(e.ni, []signature.PublicKey{pub}, storeDir)
	if err != nil {
		e.err = fmt.Errorf("%s: %w", d.Name(file), err)
		return e
	}
	e.present = len(valid) > 0
	for _, s := range e.ni.Signatures {
		e.invalid = e.invalid || s.Name == pub.Name && !e.present
	}
	return e
}

// sign adds the key's signature to e's file, once c has checked it. Other
// signatures, unknown lines and the field order are kept. The file is
// replaced atomically (temporary file and rename), keeping its permissions.
func (e *entry) sign(ctx context.Context, d *cachedir.Dir, c *checker, keyName string, replaceInvalid bool) (Outcome, bool, error) {
	if e.present {
		return Present, false, nil
	}
	if e.invalid && !replaceInvalid {
		return 0, false, fmt.Errorf("%s: %w", d.Name(e.file), ErrInvalidSignature)
	}
	cacheOnly, err := c.check(ctx, e.ni)
	if err != nil {
		return 0, false, fmt.Errorf("%s: not signed: %w", d.Name(e.file), err)
	}
	out, replaced := insertSig(e.data, keyName, e.sig.String())
	if err := replaceFile(d, e.file, out); err != nil {
		return 0, false, err
	}
	if replaced {
		return Replaced, cacheOnly, nil
	}
	return Added, cacheOnly, nil
}

// insertSig returns data with the Sig lines by keyName removed and "Sig:
// sig" added after the remaining Sig lines, else before CA, else at the end:
// Nix's field order.
func insertSig(data []byte, keyName, sig string) ([]byte, bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	if n := len(lines); n > 0 && !bytes.HasSuffix(lines[n-1], []byte("\n")) {
		lines[n-1] = append(lines[n-1], '\n')
	}
	ours := []byte("Sig: " + keyName + ":")
	var kept [][]byte
	replaced := false
	for _, l := range lines {
		if bytes.HasPrefix(l, ours) {
			replaced = true
			continue
		}
		kept = append(kept, l)
	}
	at := -1
	for i, l := range kept {
		if bytes.HasPrefix(l, []byte("Sig:")) {
			at = i + 1
		}
	}
	if at < 0 {
		at = len(kept)
		for i, l := range kept {
			if bytes.HasPrefix(l, []byte("CA:")) {
				at = i
				break
			}
		}
	}
	var b bytes.Buffer
	for _, l := range kept[:at] {
		b.Write(l)
	}
	b.WriteString("Sig: " + sig + "\n")
	for _, l := range kept[at:] {
		b.Write(l)
	}
	return b.Bytes(), replaced
}

// replaceFile atomically replaces name with data, keeping its permissions.
func replaceFile(d *cachedir.Dir, name string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := d.Lstat(name); err == nil {
		mode = st.Mode().Perm()
	}
	if err := d.WriteFile(name, data, mode); err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("%w (is the cache a writable copy? cp -r --no-preserve=mode result/ DIR)", err)
		}
		return err
	}
	return nil
}

// DirOptions say how to sign a cache.
type DirOptions struct {
	Dir      string
	StoreDir string // "" for the cache's (nix-cache-info), else /nix/store
	Jobs     int    // narinfos signed at once; 0 for the number of CPUs
	// LockWait bounds the wait for a cache that gc holds; 0 waits as long
	// as it takes.
	LockWait time.Duration
	// Durable makes the signed narinfos durable before SignDir returns;
	// zero (false) leaves that to the kernel.
	Durable bool
	// Local, if not nil, returns the local store's record of those of
	// paths (store paths of the cache's store directory) that are valid in
	// it. The narinfo of such a path is signed only if it agrees with it.
	Local func(ctx context.Context, paths []string) (closure.Closure, error)
	// ReplaceInvalid lets a signature by the key's name that does not
	// verify be replaced; without it, such a narinfo is refused
	// (ErrInvalidSignature): the key may not be the one that made it.
	ReplaceInvalid bool
	// Warn, if not nil, is told of what does not stop signing but should
	// be known: a file system that cannot lock the cache.
	Warn func(msg string)
}

// DirStats count what SignDir did.
type DirStats struct {
	Files, Added, Present, Replaced, Failed int
	// CacheOnly counts the narinfos signed (added or replaced) whose path
	// the local store does not have: their NAR was checked against them,
	// but nothing ties that content to the store path except the cache.
	CacheOnly int
}

// SignDir signs every narinfo of the cache at o.Dir with key, holding the
// cache's shared lock. A narinfo is signed only once checked: its NAR must
// hash and decompress to what it says, and a path valid in the local store
// (o.Local) must have the store's NarHash, NarSize and References. It calls
// report, from one goroutine at a time, with each narinfo (its path) and
// what was done to it (err for a failure); it goes on past a narinfo it
// cannot sign, an invalid entry (cachedir.EntryError) included, and returns
// every such error.
func SignDir(ctx context.Context, key signature.SecretKey, o DirOptions, report func(file string, out Outcome, err error)) (DirStats, error) {
	d, err := cachedir.Open(o.Dir)
	if err != nil {
		return DirStats{}, err
	}
	defer d.Close()
	lock, err := d.Lock(ctx, cachedir.Shared, o.LockWait)
	if err != nil {
		return DirStats{}, err
	}
	defer lock.Release()
	if !lock.Supported() && o.Warn != nil {
		o.Warn(cachedir.UnlockedWarning("what this run signs"))
	}
	// An invalid nix-cache-info or nar/, which sign reads, is refused,
	// named, before any narinfo.
	if _, _, err := d.ReadInfo(); err != nil {
		return DirStats{}, err
	}
	for _, err := range d.CheckLayout() {
		if rel, _ := d.Rel(err); rel == "nar" {
			return DirStats{}, err
		}
	}
	storeDir, err := cachedir.ResolveStoreDir(o.Dir, o.StoreDir)
	if err != nil {
		return DirStats{}, err
	}
	files, invalid, err := d.NarInfos()
	if err != nil {
		return DirStats{}, err
	}
	var (
		mu    sync.Mutex
		stats = DirStats{Files: len(files) + len(invalid), Failed: len(invalid)}
		errs  = invalid
	)
	if report != nil {
		for _, err := range invalid {
			var ee *cachedir.EntryError
			errors.As(err, &ee)
			report(ee.Name, 0, err)
		}
	}
	c := &checker{storeDir: storeDir, open: func(url string) (io.ReadCloser, error) {
		name, err := cachedir.NarFile(url)
		if err != nil {
			return nil, err
		}
		return d.Open(name)
	}}
	if o.Local != nil {
		// One question for all: each Nix process costs a tenth of a second.
		// Each narinfo is read again when signed, so that memory holds no
		// more than those being signed (a narinfo may take 1 MiB).
		var ask []string
		for _, f := range files {
			if e := read(d, f, key, storeDir); e.err == nil && !e.present && (closure.Validator{StoreDir: storeDir}).CheckPath(e.ni.StorePath) == nil {
				ask = append(ask, e.ni.StorePath)
			}
		}
		if len(ask) > 0 {
			known, err := o.Local(ctx, ask)
			if err != nil {
				return DirStats{}, fmt.Errorf("ask the local store: %w", err)
			}
			c.local = make(map[string]closure.Path, len(known))
			for _, p := range known {
				c.local[p.StorePath] = p
			}
		}
	}
	keyName := KeyName(key)
	pool.Each(ctx, o.Jobs, files, func(f string) {
		e := read(d, f, key, storeDir)
		var out Outcome
		cacheOnly, err := false, e.err
		if err == nil {
			out, cacheOnly, err = e.sign(ctx, d, c, keyName, o.ReplaceInvalid)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			stats.Failed++
			errs = append(errs, err)
		case out == Added:
			stats.Added++
		case out == Present:
			stats.Present++
		case out == Replaced:
			stats.Replaced++
		}
		if cacheOnly {
			stats.CacheOnly++
		}
		if report != nil {
			report(d.Name(e.file), out, err)
		}
	})
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if o.Durable && stats.Added+stats.Replaced > 0 {
		if err := d.SyncFS(); err != nil {
			errs = append(errs, err)
		}
	}
	return stats, errors.Join(errs...)
}
