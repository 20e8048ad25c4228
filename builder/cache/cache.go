// Package cache writes a flat-file Nix binary cache: nix-cache-info, one
// narinfo per store path and the compressed NARs under nar/.
package cache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/atomicfile"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

// Dirs are created empty in every cache: Nix creates them when it opens a
// file:// store and fails on a read-only cache that lacks them.
var Dirs = []string{"nar", "realisations", "debuginfo", "log", "build-trace-v2"}

// Options say how to write a cache.
type Options struct {
	Dir         string // the cache directory
	StoreDir    string // the store directory the paths live in
	Compression compress.Method
	Level       int // compress.DefaultLevel or a level of Compression
	// Jobs bounds the paths written at once, and Threads the goroutines one
	// path's encoder may use; 0 means the number of CPUs.
	Jobs, Threads int
	// XZProgram is an external xz(1) to compress xz chunks with, or "" for
	// the pure Go encoder (compress.Options.XZProgram).
	XZProgram string
	// ChunkSize overrides compress.DefaultChunkSize: tests only.
	ChunkSize     int
	Priority      int  // nix-cache-info Priority; 0 leaves it out
	WantMassQuery bool // nix-cache-info WantMassQuery
	// Derivers adds Deriver lines for paths the closure has none for.
	Derivers map[string]string
	Log      io.Writer // per-path lines and the summary; nil for none
	// NarListing writes <hashpart>.ls listings and IndexDebugInfo the
	// debuginfo/ index, as Nix's ?write-nar-listing=1 and ?index-debug-info=1.
	NarListing, IndexDebugInfo bool
}

// Stats sum up a run.
type Stats struct {
	Paths, Skipped int
	NarBytes       uint64
	FileBytes      uint64
	Elapsed        time.Duration
}

func (o *Options) threads() int { return pool.Jobs(o.Threads) }

// Write adds every path of c to the cache at o.Dir. A path whose narinfo
// exists already is left as it is, so a cache can grow over several runs.
// Each NAR is complete and renamed into place before its narinfo is written,
// so an interrupted or failed run never leaves a narinfo without its NAR;
// the temporary files of a killed run are removed by the next one.
func Write(ctx context.Context, c closure.Closure, o Options) (Stats, error) {
	start := time.Now()
	if err := o.Compression.CheckLevel(o.Level); err != nil {
		return Stats{}, err
	}
	unlock, err := lockAndClean(o.Dir)
	if err != nil {
		return Stats{}, err
	}
	defer unlock()
	if err := Init(o.Dir, o.StoreDir, o.Priority, o.WantMassQuery); err != nil {
		return Stats{}, err
	}

	// Largest first, so that one big path does not start last and serialise
	// the end of the run.
	order := make([]closure.Path, len(c))
	copy(order, c)
	sort.SliceStable(order, func(i, j int) bool { return order[i].NarSize > order[j].NarSize })

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu    sync.Mutex
		stats Stats
	)
	pool.Each(ctx, o.Jobs, order, func(p closure.Path) {
		r, err := o.addPath(ctx, p)
		if err != nil {
			cancel(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		stats.Paths++
		if r.skipped {
			stats.Skipped++
		} else {
			stats.NarBytes += r.narSize
			stats.FileBytes += r.fileSize
		}
		if o.Log != nil {
			o.logPath(p.StorePath, r)
		}
	})
	stats.Elapsed = time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return stats, err
	}
	if o.Log != nil {
		o.logSummary(stats)
	}
	return stats, nil
}

// Init creates the cache layout and nix-cache-info; on an existing cache it
// checks that the store directory matches.
func Init(dir, storeDir string, priority int, wantMassQuery bool) error {
	for _, d := range Dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create cache: %w", err)
		}
	}
	infoPath := filepath.Join(dir, "nix-cache-info")
	if old, err := os.ReadFile(infoPath); err == nil {
		if got := cacheInfoStoreDir(string(old)); got != storeDir {
			return fmt.Errorf("%s: the cache is for store %q, not %q", infoPath, got, storeDir)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", infoPath, err)
	}
	info := "StoreDir: " + storeDir + "\n"
	if wantMassQuery {
		info += "WantMassQuery: 1\n"
	}
	if priority != 0 {
		info += fmt.Sprintf("Priority: %d\n", priority)
	}
	return atomicfile.Write(infoPath, []byte(info), 0o644)
}

func cacheInfoStoreDir(info string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "StoreDir: "); ok {
			return v
		}
	}
	return ""
}

// NarInfoPath is the narinfo file of a store path in cache dir.
func NarInfoPath(dir, storePath string) string {
	return filepath.Join(dir, hashPart(storePath)+".narinfo")
}

func hashPart(storePath string) string {
	base := filepath.Base(storePath)
	if i := strings.IndexByte(base, '-'); i > 0 {
		return base[:i]
	}
	return base
}

type result struct {
	skipped           bool
	narSize, fileSize uint64
}

func (o *Options) addPath(ctx context.Context, p closure.Path) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	infoPath := NarInfoPath(o.Dir, p.StorePath)
	if _, err := os.Stat(infoPath); err == nil {
		return result{skipped: true}, nil
	}
	ni, err := o.writeNAR(p)
	if err != nil {
		return result{}, err
	}
	if err := atomicfile.Write(infoPath, []byte(ni.String()), 0o644); err != nil {
		return result{}, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	return result{narSize: ni.NarSize, fileSize: ni.FileSize}, nil
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

// writeNAR dumps, hashes and compresses p in one pass into a temporary file
// that is renamed to its content-addressed name once complete and checked.
func (o *Options) writeNAR(p closure.Path) (*narinfo.NarInfo, error) {
	narDir := filepath.Join(o.Dir, "nar")
	tmp, err := os.CreateTemp(narDir, ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	fileHash := &countingHash{Hash: sha256.New()}
	narHash := &countingHash{Hash: sha256.New()}
	// No larger than the NAR: many small paths would each allocate 1 MiB.
	fileOut := io.MultiWriter(tmp, fileHash)
	if o.Compression == compress.None {
		// The file is the NAR: hash it once (see below).
		fileOut = tmp
	}
	fileBuf := bufio.NewWriterSize(fileOut, int(min(1<<20, max(4<<10, p.NarSize))))
	enc, err := compress.NewWriter(fileBuf, o.Compression, compress.Options{Level: o.Level, Threads: o.threads(),
		XZProgram: o.XZProgram, ChunkSize: o.ChunkSize, SizeHint: int64(p.NarSize)})
	if err != nil {
		return nil, err
	}
	tree, err := o.dumpNAR(io.MultiWriter(narHash, enc), p.StorePath)
	if err != nil {
		enc.Close()
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: compress: %w", p.StorePath, err)
	}
	if err := fileBuf.Flush(); err != nil {
		return nil, fmt.Errorf("%s: write NAR: %w", p.StorePath, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("%s: write NAR: %w", p.StorePath, err)
	}

	gotNar := nixhash.MustNewHashWithEncoding(nixhash.SHA256, narHash.Sum(nil), nixhash.NixBase32, true)
	if p.NarSize != 0 && p.NarSize != narHash.n {
		return nil, fmt.Errorf("%s: NAR size mismatch: Nix recorded %d bytes, the path dumps to %d (store corrupted or modified?)", p.StorePath, p.NarSize, narHash.n)
	}
	if p.NarHash != nil {
		want := nixhash.MustNewHashWithEncoding(p.NarHash.Algo(), p.NarHash.Digest(), nixhash.NixBase32, true)
		if want.String() != gotNar.String() {
			return nil, fmt.Errorf("%s: NAR hash mismatch: Nix recorded %s, the path dumps to %s (store corrupted or modified?)", p.StorePath, want, gotNar)
		}
	}

	if o.Compression == compress.None {
		fileHash = narHash
	}
	fh := nixhash.MustNewHashWithEncoding(nixhash.SHA256, fileHash.Sum(nil), nixhash.NixBase32, true)
	url := "nar/" + fh.Format(nixhash.NixBase32, false) + ".nar" + o.Compression.Ext()
	if err := os.Rename(tmp.Name(), filepath.Join(o.Dir, url)); err != nil {
		return nil, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	tmp = nil
	if tree != nil {
		if err := o.writeIndex(p.StorePath, url, tree); err != nil {
			return nil, err
		}
	}

	ni := &narinfo.NarInfo{
		StorePath:   p.StorePath,
		URL:         url,
		Compression: string(o.Compression),
		FileHash:    fh,
		FileSize:    fileHash.n,
		NarHash:     gotNar,
		NarSize:     narHash.n,
		CA:          p.CA,
	}
	for _, r := range p.References {
		ni.References = append(ni.References, filepath.Base(r))
	}
	deriver := p.Deriver
	if deriver == "" {
		deriver = o.Derivers[p.StorePath]
	}
	if deriver != "" {
		ni.Deriver = filepath.Base(deriver)
	}
	if ni.CA == "" && len(ni.References) == 0 {
		ni.CA = o.inferCA(ni)
	}
	return ni, nil
}

// inferCA recovers the content address of a path imported by
// builtins.path, nix-store --add or a recursive fixed-output derivation,
// which the legacy graph and closureInfo formats do not carry: its store
// path is computed from its NAR hash. Clients accept such paths unsigned.
func (o *Options) inferCA(ni *narinfo.NarInfo) string {
	candidate := *ni
	candidate.CA = "fixed:r:" + ni.NarHash.Format(nixhash.NixBase32, true)
	if ok, err := sign.ContentAddressed(&candidate, o.StoreDir); err == nil && ok {
		return candidate.CA
	}
	return ""
}

func (o *Options) logPath(storePath string, r result) {
	if r.skipped {
		fmt.Fprintf(o.Log, "%s: already in the cache\n", storePath)
		return
	}
	fmt.Fprintf(o.Log, "%s: NAR %s, %s %s\n", storePath, HumanBytes(r.narSize), o.Compression, HumanBytes(r.fileSize))
}

func (o *Options) logSummary(s Stats) {
	ratio := 0.0
	if s.NarBytes > 0 {
		ratio = float64(s.FileBytes) / float64(s.NarBytes)
	}
	secs := s.Elapsed.Seconds()
	fmt.Fprintf(o.Log, "%d paths (%d already present): NAR %s -> %s %s (ratio %.3f) in %.2fs, %s/s\n",
		s.Paths, s.Skipped, HumanBytes(s.NarBytes), o.Compression, HumanBytes(s.FileBytes), ratio, secs,
		HumanBytes(uint64(float64(s.NarBytes)/max(secs, 1e-9))))
}

// HumanBytes formats a byte count with binary units, as the logs show them.
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
