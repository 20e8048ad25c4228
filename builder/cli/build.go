package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/mkbinarycache/mkbinarycache/builder/attrs"
	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
)

const usage = `mkbinarycache: write a flat-file Nix binary cache of a closure.

Usage:
  mkbinarycache                                   (as a derivation builder: reads structured attrs)
  mkbinarycache --out DIR --attrs FILE            [options]
  mkbinarycache --out DIR --closure-info DIR      [options]
  mkbinarycache --out DIR --graph FILE            [options]
  mkbinarycache --out DIR STORE-PATH...           [options]  (closure from nix path-info)
  mkbinarycache sign --key-file FILE CACHE-DIR    sign every narinfo (see sign --help)
  mkbinarycache verify [--public-key K]... DIR    check a cache (see verify --help)
  mkbinarycache keygen NAME                       make a signing key pair (see keygen --help)
  mkbinarycache push CACHE-DIR s3://BUCKET?...    publish a cache to S3 (see push --help)
  mkbinarycache hook --out DIR [options]          Nix's post-build-hook: add what was built (see hook --help)
  mkbinarycache gc --keep STORE-PATH... DIR       remove all but the closures of kept paths (see gc --help)
  mkbinarycache copy --from SRC --to DST [PATH]...  copy closures between caches (see copy --help)
  mkbinarycache --help | --version

A STORE-PATH is a full store path or a symbolic link to one (./result).

Options:
`

const examples = `
Examples:
  # a cache of hello's closure, xz-compressed, outside Nix
  mkbinarycache --out /tmp/cache --compression xz $(nix-build '<nixpkgs>' -A hello)
  # substitute from it on another machine
  nix-build --option substituters file:///tmp/cache --option require-sigs false ...
  # from a structured-attrs file, as a derivation would
  mkbinarycache --out /tmp/cache --attrs .attrs.json --jobs 4

Running it again on the same --out adds only the paths that are missing.
With --upstream https://cache.nixos.org, only those the upstream lacks.
Exit status: 0 success, 1 failure, 2 usage error.
`

// buildFlags are the main command's flags.
type buildFlags struct {
	out, attrsFile, closureInfo, graph string
	compression, xzProgram, storeDir   string
	level, jobs, threads, priority     int
	wantMassQuery, quiet, version      bool
	narListing, indexDebugInfo         bool
	buildClosure                       bool
}

func (f *buildFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.out, "out", "", "the cache `DIR` to write (created, or added to)")
	fs.StringVar(&f.attrsFile, "attrs", "", "read the closure from a structured-attrs JSON `FILE` (its \"closure\" list)")
	fs.StringVar(&f.closureInfo, "closure-info", "", "read the closure from a closureInfo output `DIR` (its registration)")
	fs.StringVar(&f.graph, "graph", "", "read the closure from a legacy exportReferencesGraph `FILE` (NAR hashes are computed)")
	fs.StringVar(&f.compression, "compression", "", "NAR compression: none, xz, bzip2 or zstd (default zstd)")
	fs.IntVar(&f.level, "level", 0, "compression `LEVEL` (zstd 1-22, xz 0-9, bzip2 1-9; default: the method's)")
	countVar(fs, &f.jobs, "jobs", 0, "store paths written at once (`N`, default: the number of CPUs)")
	countVar(fs, &f.threads, "threads", 0, "goroutines one NAR's encoder may use (`N`, default: the number of CPUs)")
	fs.StringVar(&f.xzProgram, "xz-program", "auto", "xz(1) `PATH` to compress xz chunks of 1 MiB and more with (much faster than the built-in encoder, same format); \"auto\": xz from PATH if any; \"none\": the built-in encoder")
	countVar(fs, &f.priority, "priority", 0, "nix-cache-info Priority (`N`, default: none)")
	fs.BoolVar(&f.wantMassQuery, "want-mass-query", false, "write WantMassQuery: 1 to nix-cache-info")
	fs.StringVar(&f.storeDir, "store-dir", "", "the store `DIR` (default: $NIX_STORE or /nix/store)")
	fs.BoolVar(&f.narListing, "nar-listing", false, "write a listing of each NAR's files, <hash>.ls, for nix store ls/cat (as Nix's ?write-nar-listing=1)")
	fs.BoolVar(&f.indexDebugInfo, "index-debug-info", false, "index lib/debug/.build-id files in debuginfo/ (as Nix's ?index-debug-info=1)")
	fs.BoolVar(&f.buildClosure, "build-closure", false, "with store paths: add what building them needs, their derivations' closure with outputs (nix-store -qR --include-outputs)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only errors")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
}

// runBuild is the main command: a cache of a closure given on the command
// line.
func runBuild(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache", usage, env)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), examples)
	}
	var f buildFlags
	f.define(fs)
	var up upstreamFlags
	up.register(fs, "paths it serves are not stored")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if f.version {
		fmt.Fprintf(env.Stdout, "mkbinarycache %s\n", Version)
		return nil
	}
	set := given(fs)
	storeDir := storeDir(f.storeDir, env)
	o := cache.Options{StoreDir: storeDir, Level: levelFlag(f.level, set), Jobs: f.jobs, Threads: f.threads,
		Priority: f.priority, WantMassQuery: f.wantMassQuery,
		NarListing: f.narListing, IndexDebugInfo: f.indexDebugInfo,
		Durable: true}
	compression, xzProgram := f.compression, f.xzProgram
	in, err := chooseInput(f, paths)
	if err != nil {
		return err
	}
	var c closure.Closure
	if in == fromAttrs {
		a, err := attrs.Read(f.attrsFile, closure.Validator{StoreDir: storeDir})
		if err != nil {
			return err
		}
		c = a.Closure
		o, compression, xzProgram = withAttrs(o, compression, xzProgram, a, set)
		if f.out == "" {
			f.out = a.Out
		}
	} else if c, err = readClosure(ctx, in, f, paths, nix(env, storeDir)); err != nil {
		return err
	}
	if f.out == "" {
		return usagef("--out is required")
	}
	if err := setCompression(&o, compression, xzProgram, env); err != nil {
		return err
	}
	client, err := up.client(ctx, env, storeDir)
	if err != nil {
		return err
	}
	if c, o.Upstream, err = withoutServed(ctx, client, f.out, c, warner(env.Stderr, "", "stored here")); err != nil {
		return err
	}
	return writeCache(ctx, f.out, c, o, env.Stderr, f.quiet)
}

// input is where the main command reads its closure from.
type input int

const (
	fromAttrs input = iota
	fromClosureInfo
	fromGraph
	fromStorePaths
)

// chooseInput returns the one closure source the command line names.
func chooseInput(f buildFlags, paths []string) (input, error) {
	var ins []input
	for in, given := range map[input]bool{
		fromAttrs:       f.attrsFile != "",
		fromClosureInfo: f.closureInfo != "",
		fromGraph:       f.graph != "",
		fromStorePaths:  len(paths) > 0,
	} {
		if given {
			ins = append(ins, in)
		}
	}
	if len(ins) != 1 {
		return 0, usagef("give exactly one of --attrs, --closure-info, --graph or store paths")
	}
	return ins[0], nil
}

// readClosure reads the closure from a closureInfo, a legacy graph, or asks
// Nix for the store paths' one.
func readClosure(ctx context.Context, in input, f buildFlags, args []string, n nixquery.Nix) (closure.Closure, error) {
	v := closure.Validator{StoreDir: n.StoreDir}
	switch in {
	case fromClosureInfo:
		return readFile(f.closureInfo+"/registration", func(r io.Reader, src string) (closure.Closure, error) {
			return closure.ParseRegistration(r, v, src)
		})
	case fromGraph:
		return readFile(f.graph, func(r io.Reader, src string) (closure.Closure, error) {
			return closure.ParseGraph(r, v, src)
		})
	}
	paths, err := nixquery.StorePaths(n.StoreDir, args)
	if err != nil {
		return nil, usageError{err}
	}
	if f.buildClosure {
		if paths, err = n.BuildClosure(ctx, paths); err != nil {
			return nil, fmt.Errorf("--build-closure: %w", err)
		}
	}
	return n.PathInfo(ctx, paths)
}

// withAttrs takes from a derivation's attributes every option the command
// line did not give (set names the flags given). It returns the options,
// and the compression and xz program to set them with.
func withAttrs(o cache.Options, compression, xzProgram string, a *attrs.Attrs, set map[string]bool) (cache.Options, string, string) {
	if !set["compression"] {
		compression = a.Compression
	}
	if !set["level"] && a.Level != nil {
		o.Level = compress.Level(*a.Level)
	}
	if !set["jobs"] && a.Jobs != nil {
		o.Jobs = *a.Jobs
	}
	if !set["priority"] {
		o.Priority = a.Priority
	}
	if !set["xz-program"] && a.XZProgram != "" {
		xzProgram = a.XZProgram
	}
	o.WantMassQuery = o.WantMassQuery || a.WantMassQuery
	o.NarListing = o.NarListing || a.NarListing
	o.IndexDebugInfo = o.IndexDebugInfo || a.IndexDebugInfo
	o.Derivers = a.Derivers
	return o, compression, xzProgram
}

// setCompression sets the compression options: a bad method or level is a
// usage error (exit 2), before any work. xzProgram is a path, "none" (or
// "") for the built-in encoder, or "auto": xz from PATH, if any.
func setCompression(o *cache.Options, compression, xzProgram string, env Env) error {
	var err error
	if o.Compression, err = parseCompression(compression); err != nil {
		return usageError{err}
	}
	if err := o.Compression.CheckLevel(o.Level); err != nil {
		return usageError{err}
	}
	o.XZProgram = ""
	if o.Compression == compress.XZ {
		switch xzProgram {
		case "none", "":
		case "auto":
			o.XZProgram = nixquery.LookPath(env.Getenv, "xz")
		default:
			o.XZProgram = xzProgram
		}
	}
	return nil
}

// writeCache runs a cache.Writer, rendering its progress on stderr.
func writeCache(ctx context.Context, dir string, c closure.Closure, o cache.Options, stderr io.Writer, quiet bool) error {
	w, err := cache.NewWriter(dir, o)
	if err != nil {
		return err
	}
	m := newMeter(stderr, "paths", quiet)
	stats, err := w.Write(ctx, c, func(e cache.Event) { countWrite(m, o.Compression, e) })
	if err != nil {
		m.finish("")
		return err
	}
	ratio := 0.0
	if stats.NarBytes > 0 {
		ratio = float64(stats.FileBytes) / float64(stats.NarBytes)
	}
	summary := fmt.Sprintf("%d paths (%d already present): NAR %s -> %s %s (ratio %.3f) in %.2fs, %s",
		stats.Paths, stats.Skipped, humanBytes(stats.NarBytes), o.Compression, humanBytes(stats.FileBytes), ratio,
		stats.Elapsed.Seconds(), rate(stats.NarBytes, stats.Elapsed))
	if len(o.Upstream) > 0 {
		summary += fmt.Sprintf("; %d paths served upstream, not stored", len(o.Upstream))
	}
	m.finish(summary)
	return nil
}

// countWrite feeds a cache.Writer's event to m.
func countWrite(m *meter, method compress.Method, e cache.Event) {
	switch e.Kind {
	case cache.Planned:
		m.plan(e.Paths, e.NarBytes)
	case cache.Progress:
		m.add(e.NarBytes)
	case cache.Skipped:
		m.info(e.Path + ": already in the cache")
	case cache.Warning:
		m.warn(e.Path, e.Msg)
	case cache.Written:
		m.done(fmt.Sprintf("%s: NAR %s, %s %s", e.Path, humanBytes(e.NarBytes), method, humanBytes(e.FileBytes)))
	}
}

// runInDerivation is the builder of mkBinaryCache: everything comes from the
// structured attrs and the environment Nix sets.
func runInDerivation(ctx context.Context, env Env) error {
	name, err := attrs.Find(env.Getenv)
	if err != nil {
		return usagef("%v (outside a derivation, give --out and a closure; see --help)", err)
	}
	storeDir := storeDir("", env)
	a, err := attrs.Read(name, closure.Validator{StoreDir: storeDir})
	if err != nil {
		return err
	}
	if a.Out == "" {
		return fmt.Errorf("%s: no outputs.out", name)
	}
	// Not durable: Nix makes the output durable when it registers it.
	o := cache.Options{StoreDir: storeDir}
	o, compression, xzProgram := withAttrs(o, "", "none", a, nil)
	if a.Jobs == nil {
		// NIX_BUILD_CORES bounds the build's parallelism; 0 means all cores.
		if n, err := strconv.Atoi(env.Getenv("NIX_BUILD_CORES")); err == nil && n > 0 {
			o.Jobs, o.Threads = n, n
		}
	}
	if err := setCompression(&o, compression, xzProgram, env); err != nil {
		return fmt.Errorf("%s: %v", name, err) // the attrs' fault, not a usage error
	}
	return writeCache(ctx, a.Out, a.Closure, o, env.Stderr, false)
}

// parseCompression parses a compression name; none given means the
// default.
func parseCompression(s string) (compress.Method, error) {
	if s == "" {
		return cache.DefaultCompression, nil
	}
	return compress.Parse(s)
}

// levelFlag is the Level of a --level flag: the method's default unless
// given (set names the flags given), and 0 is xz -0.
func levelFlag(n int, set map[string]bool) int {
	if !set["level"] {
		return compress.DefaultLevel
	}
	return compress.Level(n)
}

func readFile(name string, parse func(io.Reader, string) (closure.Closure, error)) (closure.Closure, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return parse(fh, name)
}
