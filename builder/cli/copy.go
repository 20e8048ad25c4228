package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cachecopy"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
)

const copyUsage = `Usage: mkbinarycache copy --from SRC --to DST [--build-closure] [--upstream URL]... [STORE-PATH...]

Copies the closures of the store paths (all of SRC when none are given)
from the cache SRC to the cache DST, by SRC's References: NAR files byte for
byte (checked against their FileHash and FileSize, not recompressed),
narinfos with their signatures, .ls listings and debuginfo/ entries. Paths
DST has are skipped, and with --upstream those the upstream serves. A new
DST gets SRC's nix-cache-info; an existing one must be for the same store.
SRC is only read. DST is written as a cache writer does: each narinfo
after its NAR and its references, durably. A path whose narinfo or NAR in
SRC is invalid is skipped with the paths that refer to it; the rest is
copied, then copy exits 1.

Options:
`

func runCopy(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache copy", copyUsage, env)
	from := fs.String("from", "", "the source cache `DIR` (read only)")
	to := fs.String("to", "", "the destination cache `DIR` (created, or added to)")
	buildClosure := fs.Bool("build-closure", false, "also copy the paths' derivations, their closures and outputs (from Deriver lines)")
	var jobs int
	countVar(fs, &jobs, "jobs", 0, "NARs copied at once (`N`, default: the number of CPUs)")
	lockWait := fs.Duration("lock-wait", 0, "how long to wait for a gc holding either cache (`DURATION`; default: as long as it takes)")
	quiet := fs.Bool("quiet", false, "print only the summary and errors")
	var up upstreamFlags
	up.register(fs, "paths it serves are not copied, and SRC may lack them")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return usagef("copy: --from and --to are required")
	}
	storeDir, err := cachedir.ResolveStoreDir(*from, "")
	if err != nil {
		return err
	}
	if paths, err = nixquery.StorePaths(storeDir, paths); err != nil {
		return usagef("copy: %v", err)
	}
	o := cachecopy.Options{Src: *from, Dst: *to, Paths: paths, BuildClosure: *buildClosure,
		Durable: true, LockWait: *lockWait, Jobs: jobs}
	m := newMeter(env.Stderr, "paths", *quiet)
	if o.Served, err = up.served(ctx, env, storeDir, m, "copy", "copied"); err != nil {
		return err
	}
	stats, err := cachecopy.Copy(ctx, o, func(e cachecopy.Event) {
		switch e.Kind {
		case cachecopy.Invalid:
			m.skipped(e.Path, e.Msg)
		case cachecopy.Warning:
			m.warn(e.Path, e.Msg)
		case cachecopy.Planned:
			m.plan(e.Paths, e.FileBytes)
		case cachecopy.Copied:
			m.add(e.FileBytes)
			m.done(fmt.Sprintf("copied %s (%s)", e.Path, humanBytes(e.FileBytes)))
		}
	})
	if err != nil && !errors.Is(err, cachecopy.ErrInvalid) {
		m.finish("")
		if errors.Is(err, cachecopy.ErrSameCache) {
			return usagef("copy: %v", err)
		}
		return err
	}
	// Invalid entries were skipped: what was copied is said, then the
	// error (exit 1).
	m.finish(fmt.Sprintf("copy: %d paths copied (%s), %d already in %s, in %s",
		stats.Copied, humanBytes(stats.FileBytes), stats.Skipped, *to, stats.Elapsed.Round(time.Millisecond)))
	return err
}
