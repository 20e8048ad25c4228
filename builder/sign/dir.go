package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
)

// Outcome is what SignFile did to one narinfo.
type Outcome int

// The outcomes of SignFile.
const (
	Added    Outcome = iota // a signature was added
	Present                 // a valid signature by the key was there already
	Replaced                // an invalid signature by the key was replaced
)

// SignFile adds key's signature to the narinfo file name of the cache d,
// unless a valid
// signature by that key is there already. Other signatures, unknown lines
// and the field order are kept; an invalid signature with the key's name
// (one made before the narinfo changed) is replaced. The file is replaced
// atomically (temporary file and rename), keeping its permissions.
func SignFile(d *cachedir.Dir, name string, key signature.SecretKey, storeDir string) (Outcome, error) {
	// An invalid narinfo (a symlink, misnamed, rejected by Nix's parser,
	// naming no NAR) is refused.
	data, ni, err := d.ReadNarInfo(name, storeDir)
	if err != nil {
		return 0, err
	}
	sig, err := Sign(ni, key, storeDir)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.Name(name), err)
	}
	pub := key.ToPublicKey()
	valid, err := Valid(ni, []signature.PublicKey{pub}, storeDir)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.Name(name), err)
	}
	if len(valid) > 0 {
		return Present, nil
	}
	out, replaced := insertSig(data, pub.Name, sig.String())
	if err := replaceFile(d, name, out); err != nil {
		return 0, err
	}
	if replaced {
		return Replaced, nil
	}
	return Added, nil
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
	// LockWait bounds the wait for a cache that gc holds (< 0: forever).
	LockWait time.Duration
	// Durable makes the signed narinfos durable before SignDir returns;
	// zero (false) leaves that to the kernel.
	Durable bool
}

// DirStats count what SignDir did.
type DirStats struct {
	Files, Added, Present, Replaced, Failed int
}

// SignDir signs every narinfo of the cache at o.Dir with key (SignFile),
// holding the cache's shared lock. It calls report, from one goroutine at a
// time, with each narinfo (its path) and what was done to it (err for a
// failure); it goes on past a narinfo it cannot sign, an invalid entry
// (cachedir.EntryError) included, and returns every such error.
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
	// An invalid nix-cache-info is refused, named, before any narinfo.
	if _, _, err := d.ReadInfo(); err != nil {
		return DirStats{}, err
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
	pool.Each(ctx, o.Jobs, files, func(f string) {
		out, err := SignFile(d, f, key, storeDir)
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
		if report != nil {
			report(d.Name(f), out, err)
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
