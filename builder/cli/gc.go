package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/gc"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
)

const gcUsage = `Usage: mkbinarycache gc [--keep STORE-PATH]... [--keep-file FILE] [--build-closure] [--upstream URL]... [--dry-run] DIR

Removes from the cache DIR everything the closures of the kept store paths
do not need, judged by the cache's own narinfos (no Nix store needed):
other narinfos, NARs no kept narinfo names, their .ls listings and the
debuginfo/ entries of removed NARs. With --build-closure it also keeps what
rebuilding the kept paths needs: the derivations their Deriver lines name,
those derivations' closures and their outputs.

A kept path without a narinfo in DIR is an error, before anything is
removed; with --upstream (the URLs are not asked: gc needs no network) it
is taken as served upstream, and so are references without a narinfo.
gc holds the cache alone: hooks and other writers wait for it.
Removal keeps the cache substitutable at every moment, power cuts included.
Each removed store path (with --dry-run, each that would be) is printed on
standard output, one a line; the summary goes to standard error.

Options:
`

func runGC(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache gc", gcUsage, env)
	var keep stringsFlag
	fs.Var(&keep, "keep", "keep the closure of `STORE-PATH` (repeatable; a full store path, or a symbolic link to one such as result)")
	keepFile := fs.String("keep-file", "", "keep the closures of the store paths in `FILE`, one per line (# comments)")
	buildClosure := fs.Bool("build-closure", false, "also keep the kept paths' derivations, their closures and outputs")
	dryRun := fs.Bool("dry-run", false, "print what would be removed, remove nothing")
	lockWait := fs.Duration("lock-wait", 0, "how long to wait for the commands using the cache (`DURATION`; default: as long as it takes)")
	quiet := fs.Bool("quiet", false, "print only the summary and errors")
	var up upstreamFlags
	up.register(fs, "kept paths and references without a narinfo here are served there (gc asks nothing: no network)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("gc: give exactly one cache directory")
	}
	if len(keep) == 0 && *keepFile == "" {
		return usagef("gc: give --keep or --keep-file (gc never empties a cache by default)")
	}
	dir := pos[0]
	if *keepFile != "" {
		paths, err := readKeepFile(*keepFile)
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			// The step that writes the roots failed: keeping nothing
			// would empty the cache.
			return usagef("gc: --keep-file %s names no store path (gc never empties a cache)", *keepFile)
		}
		keep = append(keep, paths...)
	}
	storeDir, err := cachedir.ResolveStoreDir(dir, "")
	if err != nil {
		return err
	}
	if keep, err = nixquery.StorePaths(storeDir, keep); err != nil {
		return usagef("gc: --keep: %v", err)
	}
	o := gc.Options{Dir: dir, Keep: keep, BuildClosure: *buildClosure, DryRun: *dryRun, Durable: true, LockWait: *lockWait,
		Upstream: len(up.urls) > 0}
	// The removed store paths are gc's result: on stdout, one a line.
	m := newMeter(env.Stderr, "paths removed", false)
	stats, err := gc.Collect(ctx, o, func(e gc.Event) {
		switch {
		case e.Kind == gc.Warning:
			m.warn(e.Path, e.Msg)
		case e.Kind == gc.Invalid:
			how := "removed"
			if *dryRun {
				how = "would remove"
			}
			m.notice("%s invalid entry %s: %s", how, e.Path, e.Msg)
		case e.Kind == gc.Removed:
			m.done("")
			if !*quiet {
				m.result(env.Stdout, e.Path)
			}
		}
	})
	if err != nil {
		m.finish("")
		if errors.Is(err, cachedir.ErrNotCache) {
			return fmt.Errorf("gc: %w", err)
		}
		return err
	}
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	m.finish(fmt.Sprintf("gc: kept %d paths; %s %d paths, %d files, %s, in %s",
		stats.Kept, verb, stats.Paths, stats.Files, humanBytes(uint64(stats.Bytes)), stats.Elapsed.Round(time.Millisecond)))
	return nil
}

// readKeepFile reads store paths, one per line; blank lines and lines
// starting with # are skipped.
func readKeepFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("gc: --keep-file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gc: --keep-file %s: %w", name, err)
	}
	return out, nil
}
