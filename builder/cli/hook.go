package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

const hookUsage = `Usage: mkbinarycache hook --out DIR [--build-closure] [--key-file FILE] [--strict] [options]

Nix's post-build-hook: adds the closures of the paths Nix just built
(OUT_PATHS; when it is empty, as Nix 2.8 leaves it, the outputs of
DRV_PATH) to the cache DIR, NARs first and each narinfo last, durably.
When every output is in the cache already it returns at once, without
asking Nix anything.

A problem with the cache (full disk, unwritable DIR, DIR held by gc longer
than --lock-wait) is a warning: the hook exits 0 and the build goes on,
uncached. --strict makes it an error (Nix then fails the build).

In /etc/nix/nix.conf:
  post-build-hook = /etc/nix/cache-hook.sh
with /etc/nix/cache-hook.sh (executable):
  #!/bin/sh
  exec /usr/local/bin/mkbinarycache hook --build-closure --out /var/cache/nix-ci

Options:
`

type hookFlags struct {
	out, keyFile, compression, xzProgram, storeDir string
	level, jobs                                    int
	buildClosure, strict, quiet                    bool
	narListing, indexDebugInfo                     bool
	lockWait                                       time.Duration
}

func runHook(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("hook", hookUsage, env)
	var f hookFlags
	fs.StringVar(&f.out, "out", "", "the cache `DIR` to add to (created if missing)")
	fs.BoolVar(&f.buildClosure, "build-closure", false, "also add the derivation and everything building it needs (nix-store -qR --include-outputs DRV_PATH)")
	fs.StringVar(&f.keyFile, "key-file", "", "sign what is added with the secret key in `FILE` (before it is published)")
	fs.BoolVar(&f.strict, "strict", false, "fail (and so fail the build) when the cache cannot be written, instead of warning")
	fs.DurationVar(&f.lockWait, "lock-wait", 60*time.Second, "how long to wait for a gc holding the cache (`DURATION`) before giving up with a warning")
	fs.StringVar(&f.compression, "compression", "", "NAR compression: none, xz, bzip2 or zstd (default zstd)")
	fs.IntVar(&f.level, "level", compress.DefaultLevel, "compression `LEVEL` (default: the method's)")
	fs.StringVar(&f.xzProgram, "xz-program", "none", "xz(1) `PATH` for xz chunks; \"auto\": xz from PATH; \"none\": the built-in encoder")
	fs.IntVar(&f.jobs, "jobs", 0, "store paths written at once (`N`, default: the number of CPUs)")
	fs.BoolVar(&f.narListing, "nar-listing", false, "write <hash>.ls NAR listings")
	fs.BoolVar(&f.indexDebugInfo, "index-debug-info", false, "index lib/debug/.build-id files in debuginfo/")
	fs.StringVar(&f.storeDir, "store-dir", "", "the store `DIR` (default: $NIX_STORE or /nix/store)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only warnings and errors")
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
	o := cache.Options{Level: f.level, Jobs: f.jobs, NarListing: f.narListing, IndexDebugInfo: f.indexDebugInfo,
		Durable: true, LockWait: f.lockWait}
	if err := setCompression(&o, f.compression, f.xzProgram); err != nil {
		return err
	}
	o.StoreDir = strings.TrimRight(f.storeDir, "/")
	if o.StoreDir == "" {
		o.StoreDir = storeDirFromEnv(env)
	}
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
	if len(outs) == 0 {
		var err error
		if outs, err = drvOutputs(ctx, drv); err != nil {
			return err
		}
	}
	// The cache is closed under references: an output's narinfo means its
	// closure is there (and with --build-closure, the derivation's narinfo
	// that its build closure was added with it).
	done := true
	for _, p := range outs {
		if _, err := os.Lstat(cachedir.NarInfoPath(f.out, p)); err != nil {
			done = false
		}
	}
	if f.buildClosure && drv != "" {
		if _, err := os.Lstat(cachedir.NarInfoPath(f.out, drv)); err != nil {
			done = false
		}
	}
	if done {
		return nil
	}
	if f.keyFile != "" {
		key, err := sign.LoadSecretKeyFile(f.keyFile)
		if err != nil {
			return err
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
			out, err := nixOutput(ctx, "nix-store", "--query", "--requisites", "--include-outputs", "--", drv)
			if err != nil {
				return err
			}
			paths = append(strings.Fields(out), outs...)
		} else if paths, err = buildClosure(ctx, outs); err != nil {
			return err
		}
	}
	c, err := pathInfo(ctx, paths, closure.Validator{StoreDir: o.StoreDir})
	if err != nil {
		return err
	}
	w, err := cache.NewWriter(f.out, o)
	if err != nil {
		return err
	}
	var warnings []string
	stats, err := w.Write(ctx, c, func(e cache.Event) {
		if e.Kind == cache.Warning {
			warnings = append(warnings, e.Path+": "+e.Msg)
		}
	})
	for _, w := range warnings {
		fmt.Fprintf(env.Stderr, "mkbinarycache hook: warning: %s\n", w)
	}
	if errors.Is(err, cachedir.ErrBusy) {
		return fmt.Errorf("%w for %s (a gc?)", err, f.lockWait)
	}
	if err != nil {
		return err
	}
	if !f.quiet {
		fmt.Fprintf(env.Stderr, "mkbinarycache hook: added %d paths to %s (%s of NAR, %s %s), %d already there, in %s\n",
			stats.Paths-stats.Skipped, f.out, humanBytes(stats.NarBytes), o.Compression, humanBytes(stats.FileBytes),
			stats.Skipped, stats.Elapsed.Round(time.Millisecond))
	}
	return nil
}

// drvOutputs returns the output paths of a derivation, read from the .drv
// file; Nix is asked only when the file does not name them all (floating
// content-addressed outputs).
func drvOutputs(ctx context.Context, drv string) ([]string, error) {
	data, err := cachedir.ReadRegular(drv)
	if err == nil {
		if outs, err := parseDrvOutputs(string(data)); err == nil {
			return outs, nil
		}
	}
	out, err := nixOutput(ctx, "nix-store", "--query", "--outputs", "--", drv)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// parseDrvOutputs reads the output paths from a derivation in Nix's ATerm
// form: Derive([("out","/nix/store/…","",""),…],…).
func parseDrvOutputs(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "Derive([")
	if !ok {
		return nil, errors.New("not a derivation")
	}
	var outs []string
	for !strings.HasPrefix(rest, "]") {
		var fields [4]string
		var ok bool
		if rest, ok = strings.CutPrefix(rest, "("); !ok {
			return nil, errors.New("bad output list")
		}
		for i := range fields {
			var err error
			if fields[i], rest, err = atermString(rest); err != nil {
				return nil, err
			}
			sep := ","
			if i == len(fields)-1 {
				sep = ")"
			}
			if rest, ok = strings.CutPrefix(rest, sep); !ok {
				return nil, errors.New("bad output tuple")
			}
		}
		if fields[1] == "" {
			return nil, errors.New("an output without a path")
		}
		outs = append(outs, fields[1])
		rest = strings.TrimPrefix(rest, ",")
	}
	if len(outs) == 0 {
		return nil, errors.New("no outputs")
	}
	return outs, nil
}

// atermString reads a quoted string with Nix's escapes from the start of s.
func atermString(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New("expected a string")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) {
				return "", "", errors.New("unterminated string")
			}
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated string")
}

// wellKnownNixDirs hold the Nix tools on NixOS, in the default profile of
// a multi-user install, and in distribution packages.
var wellKnownNixDirs = []string{"/run/current-system/sw/bin", "/nix/var/nix/profiles/default/bin", "/usr/bin", "/usr/local/bin", "/bin"}

// nixTool finds the Nix program name without relying on PATH, which is
// minimal when nix-daemon runs a post-build-hook: NIX_BIN_DIR, the
// directory of the running Nix (the nearest ancestor process that is Nix
// and whose directory has name: the same version as the one building),
// PATH, then the usual places. It returns name when none has it.
func nixTool(getenv func(string) string, name string) string {
	var dirs []string
	if d := getenv("NIX_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, nixAncestorDirs()...)
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range wellKnownNixDirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	return name
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// nixAncestorDirs returns the directories of the executables of this
// process's ancestors that are Nix (nix, nix-daemon, nix-build, …),
// nearest first. Others are skipped: the directory of a user's shell may
// hold another Nix than the one on PATH.
func nixAncestorDirs() []string {
	var dirs []string
	pid := os.Getppid()
	for range 8 {
		if pid <= 1 {
			break
		}
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && strings.HasPrefix(filepath.Base(exe), "nix") {
			dirs = append(dirs, filepath.Dir(exe))
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			break
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:]))
		if i < 0 || len(fields) < 2 {
			break
		}
		if pid, err = strconv.Atoi(fields[1]); err != nil {
			break
		}
	}
	return dirs
}
