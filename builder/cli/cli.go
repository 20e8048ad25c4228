// Package cli is the mkbinarycache command line: as a derivation builder
// (no arguments, structured attrs), and outside Nix.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/attrs"
	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Version is set at link time (-X .../builder/cli.Version=...).
var Version = "0.1.0-dev"

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
Exit status: 0 success, 1 failure, 2 usage error.
`

// Env is the process environment the command sees.
type Env struct {
	Getenv         func(string) string
	Stdout, Stderr io.Writer
}

// Main runs the command with args (without the program name).
func Main(ctx context.Context, args []string, env Env) int {
	err := run(ctx, args, env)
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "mkbinarycache: %v\nTry 'mkbinarycache --help'.\n", err)
		return ExitUsage
	default:
		fmt.Fprintf(env.Stderr, "mkbinarycache: error: %v\n", err)
		return ExitFailure
	}
}

type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

type buildFlags struct {
	out, attrsFile, closureInfo, graph string
	compression                        string
	level, jobs, threads, priority     int
	wantMassQuery, quiet, version      bool
	storeDir                           string
	narListing, indexDebugInfo         bool
	buildClosure                       bool
	xzProgram                          string
}

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return runInDerivation(ctx, env)
	}
	switch args[0] {
	case "sign":
		return runSign(ctx, args[1:], env)
	case "verify":
		return runVerify(ctx, args[1:], env)
	case "keygen":
		return runKeygen(args[1:], env)
	case "hook":
		return runHook(ctx, args[1:], env)
	case "gc":
		return runGC(ctx, args[1:], env)
	case "copy":
		return runCopy(ctx, args[1:], env)
	case "push":
		return runPush(ctx, args[1:], env)
	}
	fs := flag.NewFlagSet("mkbinarycache", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var f buildFlags
	fs.StringVar(&f.out, "out", "", "the cache `DIR` to write (created, or added to)")
	fs.StringVar(&f.attrsFile, "attrs", "", "read the closure from a structured-attrs JSON `FILE` (its \"closure\" list)")
	fs.StringVar(&f.closureInfo, "closure-info", "", "read the closure from a closureInfo output `DIR` (its registration)")
	fs.StringVar(&f.graph, "graph", "", "read the closure from a legacy exportReferencesGraph `FILE` (NAR hashes are computed)")
	fs.StringVar(&f.compression, "compression", "", "NAR compression: none, xz, bzip2 or zstd (default zstd)")
	fs.IntVar(&f.level, "level", compress.DefaultLevel, "compression `LEVEL` (zstd 1-22, xz 0-9, bzip2 1-9; default: the method's)")
	fs.IntVar(&f.jobs, "jobs", 0, "store paths written at once (`N`, default: the number of CPUs)")
	fs.IntVar(&f.threads, "threads", 0, "goroutines one NAR's encoder may use (`N`, default: the number of CPUs)")
	fs.StringVar(&f.xzProgram, "xz-program", "auto", "xz(1) `PATH` to compress xz chunks of 1 MiB and more with (much faster than the built-in encoder, same format); \"auto\": xz from PATH if any; \"none\": the built-in encoder")
	fs.IntVar(&f.priority, "priority", 0, "nix-cache-info Priority (`N`, default: none)")
	fs.BoolVar(&f.wantMassQuery, "want-mass-query", false, "write WantMassQuery: 1 to nix-cache-info")
	fs.StringVar(&f.storeDir, "store-dir", "", "the store `DIR` (default: $NIX_STORE or /nix/store)")
	fs.BoolVar(&f.narListing, "nar-listing", false, "write a listing of each NAR's files, <hash>.ls, for nix store ls/cat (as Nix's ?write-nar-listing=1)")
	fs.BoolVar(&f.indexDebugInfo, "index-debug-info", false, "index lib/debug/.build-id files in debuginfo/ (as Nix's ?index-debug-info=1)")
	fs.BoolVar(&f.buildClosure, "build-closure", false, "with store paths: add what building them needs, their derivations' closure with outputs (nix-store -qR --include-outputs)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only errors")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), examples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if f.version {
		fmt.Fprintf(env.Stdout, "mkbinarycache %s\n", Version)
		return nil
	}
	storeDir := f.storeDir
	if storeDir == "" {
		storeDir = storeDirFromEnv(env)
	}
	v := closure.Validator{StoreDir: storeDir}

	sources := 0
	for _, s := range []string{f.attrsFile, f.closureInfo, f.graph} {
		if s != "" {
			sources++
		}
	}
	if fs.NArg() > 0 {
		sources++
	}
	if sources != 1 {
		return usagef("give exactly one of --attrs, --closure-info, --graph or store paths")
	}

	o := cache.Options{StoreDir: storeDir, Level: f.level, Jobs: f.jobs, Threads: f.threads,
		Priority: f.priority, WantMassQuery: f.wantMassQuery,
		NarListing: f.narListing, IndexDebugInfo: f.indexDebugInfo,
		Durable: true, LockWait: -1}
	out := f.out
	compression := f.compression
	var c closure.Closure
	var err error
	switch {
	case f.attrsFile != "":
		a, err := attrs.Read(f.attrsFile, v)
		if err != nil {
			return err
		}
		c = a.Closure
		applyAttrs(&o, &compression, a, f.level == compress.DefaultLevel, f.jobs == 0)
		if out == "" {
			out = a.Out
		}
	case f.closureInfo != "":
		c, err = readFile(f.closureInfo+"/registration", func(r io.Reader, src string) (closure.Closure, error) {
			return closure.ParseRegistration(r, v, src)
		})
	case f.graph != "":
		c, err = readFile(f.graph, func(r io.Reader, src string) (closure.Closure, error) {
			return closure.ParseGraph(r, v, src)
		})
	default:
		paths := fs.Args()
		if f.buildClosure {
			paths, err = buildClosure(ctx, paths)
		}
		if err == nil {
			c, err = pathInfo(ctx, paths, v)
		}
	}
	if err != nil {
		return err
	}
	if out == "" {
		return usagef("--out is required")
	}
	if err := setCompression(&o, compression, f.xzProgram); err != nil {
		return err
	}
	return writeCache(ctx, out, c, o, env.Stderr, f.quiet)
}

// setCompression sets the compression options from the flags: a bad
// method or level is a usage error (exit 2), before any work. "auto" keeps
// an xz program set already (by a derivation's attrs).
func setCompression(o *cache.Options, compression, xzProgram string) error {
	var err error
	if o.Compression, err = parseCompression(compression); err != nil {
		return usageError{err}
	}
	if err := o.Compression.CheckLevel(o.Level); err != nil {
		return usageError{err}
	}
	if o.Compression == compress.XZ {
		switch xzProgram {
		case "none", "":
			o.XZProgram = ""
		case "auto":
			if o.XZProgram == "" {
				o.XZProgram, _ = exec.LookPath("xz")
			}
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
	pr := newProgress(stderr, quiet, o.Compression)
	stats, err := w.Write(ctx, c, pr.event)
	if err != nil {
		pr.clear()
		return err
	}
	pr.summary(stats)
	return nil
}

// applyAttrs takes the options a derivation set, where the command line did
// not set them.
func applyAttrs(o *cache.Options, compression *string, a *attrs.Attrs, level, jobs bool) {
	if *compression == "" {
		*compression = a.Compression
	}
	if level && a.Level != nil {
		o.Level = *a.Level
	}
	if jobs && a.Jobs != nil {
		o.Jobs = *a.Jobs
	}
	if o.Priority == 0 {
		o.Priority = a.Priority
	}
	o.WantMassQuery = o.WantMassQuery || a.WantMassQuery
	o.Derivers = a.Derivers
	o.NarListing = o.NarListing || a.NarListing
	o.IndexDebugInfo = o.IndexDebugInfo || a.IndexDebugInfo
	o.XZProgram = a.XZProgram
}

// runInDerivation is the builder of mkBinaryCache: everything comes from the
// structured attrs and the environment Nix sets.
func runInDerivation(ctx context.Context, env Env) error {
	name, err := attrs.Find()
	if err != nil {
		return usagef("%v (outside a derivation, give --out and a closure; see --help)", err)
	}
	storeDir := storeDirFromEnv(env)
	a, err := attrs.Read(name, closure.Validator{StoreDir: storeDir})
	if err != nil {
		return err
	}
	if a.Out == "" {
		return fmt.Errorf("%s: no outputs.out", name)
	}
	o := cache.Options{StoreDir: storeDir, Level: compress.DefaultLevel, LockWait: -1}
	compression := ""
	applyAttrs(&o, &compression, a, true, true)
	if a.Jobs == nil {
		// NIX_BUILD_CORES bounds the build's parallelism; 0 means all cores.
		if n, err := strconv.Atoi(env.Getenv("NIX_BUILD_CORES")); err == nil && n > 0 {
			o.Jobs, o.Threads = n, n
		}
	}
	if o.Compression, err = parseCompression(compression); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return writeCache(ctx, a.Out, a.Closure, o, env.Stderr, false)
}

// parseCompression parses a compression name; none given means zstd, the
// default of nixpkgs' mkBinaryCache.
func parseCompression(s string) (compress.Method, error) {
	if s == "" {
		return compress.Zstd, nil
	}
	return compress.Parse(s)
}

func storeDirFromEnv(env Env) string {
	if d := env.Getenv("NIX_STORE"); d != "" {
		return strings.TrimRight(d, "/")
	}
	return cachedir.DefaultStoreDir
}

func readFile(name string, parse func(io.Reader, string) (closure.Closure, error)) (closure.Closure, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return parse(fh, name)
}

// nixOutput runs a Nix command and returns its standard output; the error
// carries the command and what Nix said.
func nixOutput(ctx context.Context, name string, args ...string) (string, error) {
	// Not from PATH alone: a post-build-hook under nix-daemon gets a
	// minimal environment.
	cmd := exec.CommandContext(ctx, nixTool(os.Getenv, name), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// buildClosure returns the derivations of paths (a .drv stays itself) with
// their closures and valid outputs: what a machine needs to rebuild paths
// from the cache, or to run nix log / nix-store --query --deriver on them.
func buildClosure(ctx context.Context, paths []string) ([]string, error) {
	var drvs, outs []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		} else {
			outs = append(outs, p)
		}
	}
	if len(outs) > 0 {
		// One process for all: each costs about 0.1 s to start.
		out, err := nixOutput(ctx, "nix-store", append([]string{"--query", "--deriver", "--"}, outs...)...)
		if err != nil {
			return nil, err
		}
		derivers := strings.Fields(out)
		if len(derivers) != len(outs) {
			return nil, fmt.Errorf("--build-closure: nix-store --query --deriver gave %d lines for %d paths", len(derivers), len(outs))
		}
		for i, drv := range derivers {
			if drv == "unknown-deriver" {
				return nil, fmt.Errorf("--build-closure: %s has no known deriver", outs[i])
			}
			if _, err := os.Stat(drv); err != nil {
				return nil, fmt.Errorf("--build-closure: the deriver of %s: %w", outs[i], err)
			}
			drvs = append(drvs, drv)
		}
	}
	out, err := nixOutput(ctx, "nix-store", append([]string{"--query", "--requisites", "--include-outputs", "--"}, drvs...)...)
	if err != nil {
		return nil, err
	}
	return append(strings.Fields(out), paths...), nil
}

// pathInfo asks Nix for the closure of paths, with NAR hashes, sizes and
// derivers. The new CLI takes a .drv as its outputs unless told
// --derivation, so derivations get a call of their own.
func pathInfo(ctx context.Context, paths []string, v closure.Validator) (closure.Closure, error) {
	var drvs, others []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		} else {
			others = append(others, p)
		}
	}
	var cs []closure.Closure
	for _, group := range []struct {
		paths []string
		flags []string
	}{{others, nil}, {drvs, []string{"--derivation"}}} {
		if len(group.paths) == 0 {
			continue
		}
		run := func(format ...string) (string, error) {
			args := append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, format...)
			args = append(append(args, "--recursive"), group.flags...)
			return nixOutput(ctx, "nix", append(append(args, "--"), group.paths...)...)
		}
		// Nix 2.34 deprecates --json without --json-format, which Nix
		// 2.8 and 2.26 do not know: try the new form first.
		out, err := run("--json-format", "1")
		if err != nil && strings.Contains(err.Error(), "unrecognised flag '--json-format'") {
			out, err = run()
		}
		if err != nil {
			return nil, err
		}
		c, err := closure.ParsePathInfo([]byte(out), v, "nix path-info")
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return closure.Merge(cs...)
}
