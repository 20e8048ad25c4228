package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

const hookUsage = `Usage: mkbinarycache hook --out DIR [--build-closure] [--upstream URL]... [--build-logs] [--key-file FILE] [--strict] [options]

Nix's post-build-hook: adds the closures of the paths Nix just built
(OUT_PATHS; when it is empty, as Nix 2.8 leaves it, the outputs of
DRV_PATH) to the cache DIR, NARs first and each narinfo last, durably.
When every output is in the cache already it returns at once, without
asking Nix anything.

A problem with the cache (full disk, unwritable DIR, DIR held by gc longer
than --lock-wait) is a warning: the hook exits 0 and the build goes on,
uncached. --strict makes it an error (Nix then fails the build).
An upstream that cannot be asked is a warning too: its paths are stored.

With --build-logs it also stores the log Nix kept of building DRV_PATH as
log/<drv>, which "nix log" reads from the cache. A public cache publishes
whatever a build printed: tokens, paths, environment dumps.

In /etc/nix/nix.conf:
  post-build-hook = /etc/nix/cache-hook.sh
with /etc/nix/cache-hook.sh (executable):
  #!/bin/sh
  exec /usr/local/bin/mkbinarycache hook --build-closure --out /var/cache/nix-ci

` + upstreamUsage + `
Options:
`

type hookFlags struct {
	upstream                                       upstreamFlags
	out, keyFile, compression, xzProgram, storeDir string
	level, jobs                                    int
	buildClosure, strict, quiet, buildLogs         bool
	logMax                                         int64
	narListing, indexDebugInfo                     bool
	lockWait                                       time.Duration
}

func runHook(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache hook", hookUsage, env)
	var f hookFlags
	fs.StringVar(&f.out, "out", "", "the cache `DIR` to add to (created if missing)")
	fs.BoolVar(&f.buildClosure, "build-closure", false, "also add the derivation and everything building it needs (nix-store -qR --include-outputs DRV_PATH)")
	fs.StringVar(&f.keyFile, "key-file", "", "sign what is added with the secret key in `FILE` (before it is published)")
	fs.BoolVar(&f.strict, "strict", false, "fail (and so fail the build) when the cache cannot be written, instead of warning")
	fs.DurationVar(&f.lockWait, "lock-wait", 60*time.Second, "how long to wait for a gc holding the cache (`DURATION`; 0: as long as it takes) before giving up with a warning")
	fs.StringVar(&f.compression, "compression", "", "NAR compression: none, xz, bzip2 or zstd (default zstd)")
	fs.IntVar(&f.level, "level", 0, "compression `LEVEL` (default: the method's)")
	fs.StringVar(&f.xzProgram, "xz-program", "none", "xz(1) `PATH` for xz chunks; \"auto\": xz from PATH; \"none\": the built-in encoder")
	countVar(fs, &f.jobs, "jobs", 0, "store paths written at once (`N`, default: the number of CPUs)")
	fs.BoolVar(&f.narListing, "nar-listing", false, "write <hash>.ls NAR listings")
	fs.BoolVar(&f.indexDebugInfo, "index-debug-info", false, "index lib/debug/.build-id files in debuginfo/")
	fs.StringVar(&f.storeDir, "store-dir", "", "the store `DIR` (default: $NIX_STORE or /nix/store)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only warnings and errors")
	f.upstream.register(fs, "paths it serves are not stored")
	fs.BoolVar(&f.buildLogs, "build-logs", false, "also store the build log of DRV_PATH as log/<drv> (raw, as nix store copy-log): a public cache publishes whatever the build printed")
	fs.Int64Var(&f.logMax, "build-log-max", DefaultLogMax, "keep the first `BYTES` of a longer build log, with a line saying so at its end")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("hook: unexpected argument %q (the paths come from OUT_PATHS and DRV_PATH)", fs.Arg(0))
	}
	if f.out == "" {
		return usagef("hook: --out is required")
	}
	if f.logMax < 1 {
		return usagef("hook: --build-log-max must be at least 1")
	}
	o := cache.Options{Level: levelFlag(f.level, given(fs)), Jobs: f.jobs, NarListing: f.narListing, IndexDebugInfo: f.indexDebugInfo,
		Durable: true, LockWait: f.lockWait}
	if err := setCompression(&o, f.compression, f.xzProgram, env); err != nil {
		return err
	}
	o.StoreDir = storeDir(f.storeDir, env)
	outs := strings.Fields(env.Getenv("OUT_PATHS"))
	drv := env.Getenv("DRV_PATH")
	if len(outs) == 0 && drv == "" {
		return usagef("hook: neither OUT_PATHS nor DRV_PATH is set: run it as Nix's post-build-hook")
	}
	err := hook(ctx, f, o, outs, drv, env)
	if err == nil || f.strict {
		return err
	}
	// The build succeeded; a cache problem must not fail it.
	what := drv
	if what == "" {
		what = strings.Join(outs, " ")
	}
	fmt.Fprintf(env.Stderr, "mkbinarycache hook: warning: %s not added to %s: %v\n", what, f.out, err)
	return nil
}

func hook(ctx context.Context, f hookFlags, o cache.Options, outs []string, drv string, env Env) error {
	n := nix(env, o.StoreDir)
	if len(outs) == 0 {
		var err error
		if outs, err = n.DrvOutputs(ctx, drv); err != nil {
			return err
		}
	}
	// The cache is closed under references: an output's narinfo means its
	// closure is there (and with --build-closure, the derivation's narinfo
	// that its build closure was added with it).
	var want []string
	for _, p := range outs {
		want = append(want, cachedir.NarInfoName(p))
	}
	if f.buildClosure && drv != "" {
		want = append(want, cachedir.NarInfoName(drv))
	}
	done, err := hasFiles(f.out, want)
	if err != nil {
		return err
	}
	// The hook's output lands in Nix's build log: warnings and one line.
	m := newMeter(env.Stderr, "paths", f.quiet)
	m.brief, m.prefix = true, "mkbinarycache hook: "
	var did []string
	if !done {
		added, err := addPaths(ctx, n, f, o, outs, drv, env, m)
		if err != nil {
			m.finish("")
			return err
		}
		did = append(did, added)
	}
	if f.buildLogs && drv != "" {
		has, err := hasFiles(f.out, []string{cachedir.LogFile(drv)})
		if err != nil {
			m.finish("")
			return err
		}
		if !has {
			stored, err := storeLog(ctx, n, f, drv, m)
			if err != nil {
				m.finish("")
				return err
			}
			if stored != "" {
				did = append(did, stored)
			}
		}
	}
	if len(did) > 0 {
		m.finish("mkbinarycache hook: " + strings.Join(did, "; "))
	} else {
		m.finish("")
	}
	return nil
}

// DefaultLogMax is the default of hook --build-log-max: a log longer
// than this keeps its head.
const DefaultLogMax = 4 << 20

// storeLog stores the log Nix kept of building drv in the cache's log/,
// at most f.logMax bytes of it, and says what it did. No log is no error:
// the hook warns.
func storeLog(ctx context.Context, n nixquery.Nix, f hookFlags, drv string, m *meter) (string, error) {
	log, err := n.BuildLog(ctx, drv)
	if err != nil {
		m.notice("no build log of %s stored: Nix has none (%v)", drv, err)
		return "", nil
	}
	log = capLog(log, f.logMax)
	d, err := cachedir.Ensure(f.out)
	if err != nil {
		return "", err
	}
	defer d.Close()
	lock, err := d.Lock(ctx, cachedir.Shared, f.lockWait)
	if errors.Is(err, cachedir.ErrBusy) {
		return "", fmt.Errorf("%w for %s (a gc?)", err, f.lockWait)
	}
	if err != nil {
		return "", err
	}
	defer lock.Release()
	if !lock.Supported() {
		m.warn(f.out, cachedir.UnlockedWarning("the log"))
	}
	// Nothing is written through a symlinked log/.
	if err := d.MkdirLayout(); err != nil {
		return "", err
	}
	if err := d.WriteFile(cachedir.LogFile(drv), log, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("stored the build log of %s (%s)", drv, humanBytes(uint64(len(log)))), nil
}

// capLog keeps the first max bytes of a longer log, and says so at its end.
func capLog(log []byte, max int64) []byte {
	if int64(len(log)) <= max {
		return log
	}
	note := fmt.Sprintf("\n[mkbinarycache: build log truncated to its first %d of %d bytes]\n", max, len(log))
	return append(log[:max:max], note...)
}

// addPaths adds the closures of outs (with --build-closure, of drv's
// build) to the cache, without what upstream serves, and says what it did.
func addPaths(ctx context.Context, n nixquery.Nix, f hookFlags, o cache.Options, outs []string, drv string, env Env, m *meter) (string, error) {
	if f.keyFile != "" {
		key, err := sign.LoadSecretKeyFile(f.keyFile)
		if err != nil {
			return "", err
		}
		storeDir := o.StoreDir
		o.Sign = func(ni *narinfo.NarInfo) error {
			s, err := sign.Sign(ni, key, storeDir)
			if err != nil {
				return err
			}
			ni.Signatures = append(ni.Signatures, s)
			return nil
		}
	}
	paths := outs
	if f.buildClosure {
		var err error
		if drv != "" {
			paths, err = n.BuildClosure(ctx, []string{drv})
			paths = append(paths, outs...)
		} else {
			paths, err = n.BuildClosure(ctx, outs)
		}
		if err != nil {
			return "", err
		}
	}
	c, err := n.PathInfo(ctx, paths)
	if err != nil {
		return "", err
	}
	client, err := f.upstream.client(ctx, env, o.StoreDir)
	if err != nil {
		// Never lose a path over upstream: store them all.
		fmt.Fprintf(m, "mkbinarycache hook: warning: upstream not asked, every path stored: %v\n", err)
		client = nil
	}
	if c, o.Upstream, err = withoutServed(ctx, client, f.out, c, warner(m, "hook", "stored here")); err != nil {
		return "", err
	}
	w, err := cache.NewWriter(f.out, o)
	if err != nil {
		return "", err
	}
	stats, err := w.Write(ctx, c, func(e cache.Event) { countWrite(m, o.Compression, e) })
	if errors.Is(err, cachedir.ErrBusy) {
		return "", fmt.Errorf("%w for %s (a gc?)", err, f.lockWait)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("added %d paths to %s (%s of NAR, %s %s), %d already there, %d served upstream, in %s",
		stats.Paths-stats.Skipped, f.out, humanBytes(stats.NarBytes), o.Compression, humanBytes(stats.FileBytes),
		stats.Skipped, len(o.Upstream), stats.Elapsed.Round(time.Millisecond)), nil
}

// hasFiles reports whether the cache at dir has all the regular files
// rels; an invalid entry in the way of one is an error naming it.
func hasFiles(dir string, rels []string) (bool, error) {
	d, err := cachedir.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer d.Close()
	for _, rel := range rels {
		if has, err := d.Has(rel); err != nil || !has {
			return false, err
		}
	}
	return true, nil
}
