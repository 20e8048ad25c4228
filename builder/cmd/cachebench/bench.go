package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

//go:embed nixpkgs_model.py
var nixpkgsModel []byte

// Tools, in table order. The floor is the closure's NAR, dumped beforehand,
// through zstd on every core: no tool that dumps, hashes and compresses
// can beat it.
const (
	toolOurs      = "ours"
	toolOursGoXz  = "ours-goxz"
	toolNixCopy   = "nixcopy"
	toolNixNewer  = "nixcopy-newer" // with -newer-rootfs
	toolNixCopy28 = "nixcopy-host"
	toolNixpkgs   = "nixpkgs"
	toolFloor     = "floor"
)

var allTools = []string{toolOurs, toolOursGoXz, toolNixCopy, toolNixNewer, toolNixCopy28, toolNixpkgs, toolFloor}

// A benchCase is one closure compressed with one method.
type benchCase struct{ closure, method string }

func (c benchCase) String() string { return c.closure + ":" + c.method }

type config struct {
	cases   []benchCase
	tools   []string
	runs    int
	runsOf  map[string]int // fewer runs of some tools (the slow anchors)
	state   string         // persistent: store, overlay, outputs
	rootfs  string         // the root file system with the newest Nix
	newer   string         // a copy of it with a newer Nix under /opt; "" for none
	outputs string         // where the runs write their caches; "" for the state directory
	args    []string
	profile string // write profiles of mkbinarycache here; "" for none
	rev     string // build mkbinarycache from this commit; "" for the work tree
	quick   bool
	ciCycle bool // the CI cycle (cicycle.go) instead of the tools' table
}

// defaultCases are the cases of the published table.
const defaultCases = "big:zstd,many:zstd,big:xz,many:xz,big:none"

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("cachebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rootfs := nixtest.Rootfs("sid")
	cases := fs.String("cases", defaultCases, "`CLOSURE:METHOD` pairs (comma-separated); closures big, many, tiny; methods zstd, xz, none, bzip2")
	tools := fs.String("tools", strings.Join(allTools, ","), "tools to run (comma-separated): "+strings.Join(allTools, ", "))
	runs := fs.Int("runs", 3, "timed runs of each tool and case (the table compares the minimums)")
	runsOf := fs.String("runs-of", "", "`TOOL=N` pairs (comma-separated): fewer runs of these tools, e.g. nixpkgs=1 on a busy machine")
	state := fs.String("state", "/var/tmp/mkbinarycache-bench", "persistent `DIR`: the benchmark's store (closures are built once), overlay and outputs")
	rootfsFlag := fs.String("rootfs", rootfs, "Debian root file system `DIR` with the newest Nix (scripts/setup.sh makes it)")
	newer := fs.String("newer-rootfs", os.Getenv(newerRootfsEnv), "a copy of the root file system `DIR` with a newer Nix than its own installed under DIR/opt/NAME "+
		"(bin/nix, lib/ registered with ldconfig): adds its nix copy as a column, the anchor of the targets; default $"+newerRootfsEnv)
	extra := fs.String("args", "", "extra arguments for mkbinarycache (space-separated), e.g. \"--jobs 1\"")
	outputs := fs.String("outputs", "", "write the caches of the timed runs under `DIR` (say a tmpfs) rather than in the state directory")
	profile := fs.String("profile", "", "also write a CPU profile and system call counts of mkbinarycache for each case to `DIR`")
	rev := fs.String("rev", "", "build mkbinarycache from this git `REVISION` (with this benchmark's code), not the work tree: others' unfinished edits stay out")
	quick := fs.Bool("quick", false, "a tiny closure, zstd, xz and none, 1 run: checks the harness in seconds")
	ciCycle := fs.Bool("ci-cycle", false, "measure a CI cycle's run 2 on the cases' closures instead: saved bytes, save time and restore-to-substituted time of mkbinarycache --upstream against cache-nix-action's whole /nix")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := &config{tools: split(*tools), runs: *runs, state: *state, rootfs: *rootfsFlag, newer: *newer, outputs: *outputs,
		args: strings.Fields(*extra), profile: *profile, rev: *rev, quick: *quick, ciCycle: *ciCycle}
	if c.quick {
		*cases, c.runs = "tiny:zstd,tiny:xz,tiny:none", 1
	}
	for _, s := range split(*cases) {
		cl, m, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("case %q is not CLOSURE:METHOD", s)
		}
		if _, ok := closureSpecs[cl]; !ok {
			return nil, fmt.Errorf("unknown closure %q (big, many, tiny)", cl)
		}
		if _, err := compress.Parse(m); err != nil {
			return nil, err
		}
		c.cases = append(c.cases, benchCase{cl, m})
	}
	for _, t := range c.tools {
		if !slices.Contains(allTools, t) {
			return nil, fmt.Errorf("unknown tool %q (%s)", t, strings.Join(allTools, ", "))
		}
	}
	if c.newer == "" {
		c.tools = slices.DeleteFunc(c.tools, func(t string) bool { return t == toolNixNewer })
	}
	if c.runs < 1 {
		return nil, errors.New("-runs must be at least 1")
	}
	c.runsOf = map[string]int{}
	for _, s := range split(*runsOf) {
		t, n, ok := strings.Cut(s, "=")
		runs, err := strconv.Atoi(n)
		if !ok || err != nil || runs < 1 || !slices.Contains(allTools, t) {
			return nil, fmt.Errorf("-runs-of: %q is not TOOL=N with N ≥ 1 (tools: %s)", s, strings.Join(allTools, ", "))
		}
		c.runsOf[t] = runs
	}
	return c, nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// A closureSpec lists the directories imported as store paths, one each.
type closureSpec struct {
	desc string
	dirs func() ([]string, error)
}

var closureSpecs = map[string]closureSpec{
	"big": {"/usr/local/go, /usr/lib/python3.11, /usr/share/doc", func() ([]string, error) {
		return existing("/usr/local/go", "/usr/lib/python3.11", "/usr/share/doc")
	}},
	"many": {"each directory of /usr/share/doc", func() ([]string, error) {
		return subdirs("/usr/share/doc", 0)
	}},
	"tiny": {"the first 8 directories of /usr/share/doc", func() ([]string, error) {
		return subdirs("/usr/share/doc", 8)
	}},
}

func existing(dirs ...string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("none of %v exists", dirs)
	}
	return out, nil
}

func subdirs(dir string, limit int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && (limit == 0 || len(out) < limit) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no directories", dir)
	}
	return out, nil
}

// A built closure: its root store path, its structured-attrs JSON, and what
// Nix recorded of each path.
type builtClosure struct {
	name, desc string
	root       string
	attrs      string
	paths      map[string]pathInfo // by store path
	narBytes   uint64
	nar        string // the pre-dumped NAR of every path, for the floor
}

type pathInfo struct {
	Path    string `json:"path"`
	NarHash string `json:"narHash"`
	NarSize uint64 `json:"narSize"`
}

type bench struct {
	cfg      *config
	log      io.Writer
	repo     string
	work     string // attrs, expressions: visible at the same path in every env
	outputs  string // the caches the runs write, under work or -outputs
	self     string // this command, static, for timeit and profile inside the chroot
	ours     string // the mkbinarycache binary
	model    string // nixpkgs_model.py
	newest   *env   // the newest Nix, chrooted
	newer    *env   // a newer Nix than the root's own, in a copy of it; nil without -newer-rootfs
	host     *env   // the host's Nix, on the same store
	notes    []string
	closures map[string]*builtClosure
	load     [2]string // load averages at the start and the end of the timed runs
	versions string    // of the compressors in the root file system
}

// hostSrc is where the host's /usr appears inside the root file system:
// the closures are imported from the host's files.
const hostSrc = "/host"

func newBench(cfg *config, log io.Writer) (*bench, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	repo, err := nixtest.FindRoot(wd)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.rootfs, "usr", "bin", "nix")); err != nil {
		return nil, fmt.Errorf("no Nix in the root file system %s (run scripts/setup.sh): %w", cfg.rootfs, err)
	}
	state, err := filepath.Abs(cfg.state)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, log: log, repo: repo, work: filepath.Join(state, "work"), closures: map[string]*builtClosure{}}
	b.outputs = b.work
	if cfg.outputs != "" {
		if b.outputs, err = filepath.Abs(cfg.outputs); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(b.outputs, 0o755); err != nil {
			return nil, err
		}
	}
	b.newest = &env{lower: cfg.rootfs, upper: filepath.Join(state, "sid-upper"), ovlWork: filepath.Join(state, "sid-ovlwork"),
		merged: filepath.Join(state, "sid-root"), nix: filepath.Join(state, "sid-nix")}
	b.host = &env{nix: b.newest.nix}
	if cfg.newer != "" {
		if b.newer, err = newerEnv(cfg.newer, state, b.newest.nix); err != nil {
			return nil, err
		}
	}
	return b, os.MkdirAll(b.work, 0o755)
}

// newerRootfsEnv names the default of -newer-rootfs.
const newerRootfsEnv = "CACHEBENCH_NEWER_ROOTFS"

// newerEnv is the env of a Nix built for the root file system and
// installed beside its own in DIR/opt/NAME (say Nix 2.35 in /opt/nix235):
// a copy of the root, so that the one the tests use keeps only its own
// Nix. Its compiled-in state and configuration directories are under its
// prefix: the variables point them at the root's. It runs on the same
// store: the database format is the same.
func newerEnv(rootfs, state, nix string) (*env, error) {
	found, err := filepath.Glob(filepath.Join(rootfs, "opt", "*", "bin", "nix"))
	if err != nil {
		return nil, err
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("-newer-rootfs %s: want one Nix in %s, found %d", rootfs, filepath.Join(rootfs, "opt", "*", "bin", "nix"), len(found))
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr", "bin", "nix")); err != nil {
		return nil, fmt.Errorf("-newer-rootfs %s is no copy of the root file system with Nix: %w", rootfs, err)
	}
	bin := "/" + strings.TrimPrefix(filepath.Dir(found[0]), rootfs+"/")
	return &env{lower: rootfs, upper: filepath.Join(state, "newer-upper"), ovlWork: filepath.Join(state, "newer-ovlwork"),
		merged: filepath.Join(state, "newer-root"), nix: nix,
		vars: []string{"PATH=" + bin + ":" + nixtest.ChrootPath, "NIX_CONF_DIR=/etc/nix", "NIX_STATE_DIR=/nix/var/nix", "NIX_LOG_DIR=/nix/var/log/nix"}}, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "cachebench: "+format+"\n", args...)
}

// lock holds the state directory for this run: one overlay upper
// directory cannot be mounted twice at once.
func lock(state string) (*os.File, error) {
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(state, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// setup builds the binaries, prepares the envs and builds the closures.
func (b *bench) setup(ctx context.Context) error {
	src, err := b.source(ctx)
	if err != nil {
		return err
	}
	b.logf("building mkbinarycache and cachebench (CGO_ENABLED=0) from %s", src)
	dir, err := nixtest.GoBuild(src, "./builder/cmd/mkbinarycache", "mkbinarycache")
	if err != nil {
		return err
	}
	b.ours = filepath.Join(dir, "bin", "mkbinarycache")
	if dir, err = nixtest.GoBuild(src, "./builder/cmd/cachebench", "cachebench"); err != nil {
		return err
	}
	b.self = filepath.Join(dir, "bin", "cachebench")
	b.model = filepath.Join(b.work, "nixpkgs_model.py")
	if err := os.WriteFile(b.model, nixpkgsModel, 0o644); err != nil {
		return err
	}
	bb, err := nixtest.MakeBusyboxDir()
	if err != nil {
		return err
	}
	scratch, err := nixtest.Scratch()
	if err != nil {
		return err
	}
	b.newest.binds = []string{scratch + ":" + scratch, b.work + ":" + b.work, "/usr:" + hostSrc + "/usr"}
	if b.outputs != b.work {
		b.newest.binds = append(b.newest.binds, b.outputs+":"+b.outputs)
	}
	if err := b.newest.prepare(ctx, b.logf); err != nil {
		return err
	}
	if b.newer != nil {
		b.newer.binds = b.newest.binds
		if err := b.newer.prepare(ctx, b.logf); err != nil {
			return err
		}
	}
	if err := b.host.prepare(ctx, b.logf); err != nil {
		return err
	}
	if b.host.name, err = hostVersion(); err != nil {
		return err
	}
	names := []string{}
	for _, c := range b.cfg.cases {
		if !slices.Contains(names, c.closure) {
			names = append(names, c.closure)
		}
	}
	for _, name := range names {
		c, err := b.buildClosure(ctx, name, bb)
		if err != nil {
			return fmt.Errorf("closure %s: %w", name, err)
		}
		b.closures[name] = c
	}
	return nil
}

// source returns the tree to build from: the work tree, or with -rev that
// commit's tree (git archive) with this benchmark's own files copied in,
// so that the profile subcommand runs that commit's CLI.
func (b *bench) source(ctx context.Context) (string, error) {
	if b.cfg.rev == "" {
		return b.repo, nil
	}
	commit, err := exec.CommandContext(ctx, "git", "-C", b.repo, "rev-parse", "--verify", b.cfg.rev+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse %s: %w", b.cfg.rev, err)
	}
	dir := filepath.Join(filepath.Dir(b.work), "src", strings.TrimSpace(string(commit)))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	archive := fmt.Sprintf("git -C %s archive %s | tar -x -C %s", nixtest.ShellQuote(b.repo), strings.TrimSpace(string(commit)), nixtest.ShellQuote(dir))
	if out, err := exec.CommandContext(ctx, "sh", "-c", archive).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", archive, err, out)
	}
	// The harness (internal/nixtest) comes along: older commits lack
	// parts of it the benchmark uses.
	for _, d := range []string{filepath.Join("builder", "cmd", "cachebench"), filepath.Join("internal", "nixtest")} {
		files, err := filepath.Glob(filepath.Join(b.repo, d, "*"))
		if err != nil {
			return "", err
		}
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return "", err
		}
		for _, f := range files {
			if err := nixtest.CopyFile(f, filepath.Join(dir, d, filepath.Base(f)), 0o644); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

var badNameChars = regexp.MustCompile(`[^a-zA-Z0-9+._?=-]`)

// buildClosure imports the closure's directories into the benchmark's
// store with the newest Nix (once: later runs find them valid) and gets its
// structured-attrs JSON from a real derivation.
func (b *bench) buildClosure(ctx context.Context, name, bb string) (*builtClosure, error) {
	spec := closureSpecs[name]
	dirs, err := spec.dirs()
	if err != nil {
		return nil, err
	}
	b.logf("building closure %s: %d paths (%s) with Nix %s", name, len(dirs)+1, spec.desc, b.newest.name)
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var expr strings.Builder
	fmt.Fprintf(&expr, "let bb = builtins.path { path = %s; name = \"busybox\"; };\n  paths = [\n", nixtest.NixString(bb))
	for _, d := range dirs {
		n := "bench-" + badNameChars.ReplaceAllString(filepath.Base(d), "_")
		fmt.Fprintf(&expr, "    (builtins.path { path = %s; name = %s; })\n", nixtest.NixString(hostSrc+d), nixtest.NixString(n))
	}
	// The root's output names every path, so it references them all.
	fmt.Fprintf(&expr, `  ];
in derivation {
  name = %s; system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" ("echo " + builtins.concatStringsSep " " (map toString paths) + " > $out") ];
}
`, nixtest.NixString("bench-"+name))
	exprFile := filepath.Join(dir, "closure.nix")
	if err := os.WriteFile(exprFile, []byte(expr.String()), 0o644); err != nil {
		return nil, err
	}
	gcroot := filepath.Join(dir, "root")
	out, err := b.newest.output(ctx, "nix-build "+nixtest.ShellQuote(exprFile, "--option", "sandbox", "false", "-o", gcroot))
	if err != nil {
		return nil, err
	}
	c := &builtClosure{name: name, desc: spec.desc, root: strings.TrimSpace(out)}

	attrsExpr := nixtest.AttrsExpr(bb, map[string]string{"name": nixtest.NixString("bench-" + name + "-attrs")},
		[]string{nixtest.StorePathExpr(c.root)})
	attrsFile := filepath.Join(dir, "attrs.nix")
	if err := os.WriteFile(attrsFile, []byte(attrsExpr), 0o644); err != nil {
		return nil, err
	}
	c.attrs = filepath.Join(dir, "attrs.json")
	if _, err := b.newest.output(ctx, "cp $(nix-build "+nixtest.ShellQuote(attrsFile, "--option", "sandbox", "false", "--no-out-link")+") "+nixtest.ShellQuote(c.attrs)); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(c.attrs)
	if err != nil {
		return nil, err
	}
	var a struct {
		Closure []pathInfo `json:"closure"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", c.attrs, err)
	}
	c.paths = map[string]pathInfo{}
	for _, p := range a.Closure {
		c.paths[p.Path] = p
		c.narBytes += p.NarSize
	}
	if len(c.paths) != len(dirs)+1 { // the imported dirs and the root
		return nil, fmt.Errorf("the attrs list %d paths, want %d", len(c.paths), len(dirs)+1)
	}
	b.logf("closure %s: %d paths, NAR %.1f MB", name, len(c.paths), float64(c.narBytes)/1e6)
	return c, nil
}

// A measurement of one run.
type sample struct {
	wall  time.Duration
	cpu   time.Duration // user and system
	bytes uint64        // every file of the output
	rss   int64         // bytes
}

type key struct {
	c    benchCase
	tool string
}

type results map[key][]sample

// toolsFor returns the tools that apply to the case.
func (b *bench) toolsFor(c benchCase) []string {
	var out []string
	for _, t := range b.cfg.tools {
		switch {
		case t == toolOursGoXz && c.method != "xz":
		case t == toolFloor && c.method != "zstd":
		case t == toolNixpkgs && c.method == "bzip2": // nixpkgs offers none, xz and zstd
		default:
			out = append(out, t)
		}
	}
	return out
}

func (b *bench) run(ctx context.Context) (results, error) {
	l, err := lock(filepath.Dir(b.work))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	b.versions = b.toolVersions(ctx)
	res := results{}
	b.load[0] = loadavg()
	for _, bc := range b.cfg.cases {
		c := b.closures[bc.closure]
		tools := b.toolsFor(bc)
		if slices.Contains(tools, toolFloor) {
			if err := b.dumpNAR(ctx, c); err != nil {
				return nil, err
			}
		}
		for r := range b.cfg.runs {
			// Rotate the order of the tools so none always runs on a page
			// cache warmed (or a machine loaded) by another.
			for i := range tools {
				tool := tools[(i+r)%len(tools)]
				if n, ok := b.cfg.runsOf[tool]; ok && r >= n {
					continue
				}
				s, err := b.once(ctx, c, bc.method, tool, r)
				if err != nil {
					return nil, fmt.Errorf("%s %s run %d: %w", bc, tool, r+1, err)
				}
				k := key{bc, tool}
				res[k] = append(res[k], s)
				b.logf("%-10s %-26s run %d: %7.2fs (CPU %6.2fs) %8.1f MB  RSS %4d MB  (load %s)", bc, b.label(tool), r+1,
					s.wall.Seconds(), s.cpu.Seconds(), float64(s.bytes)/1e6, s.rss>>20, loadavg())
			}
		}
		if c.nar != "" {
			os.Remove(c.nar)
			c.nar = ""
		}
		if b.cfg.profile != "" && slices.Contains(tools, toolOurs) {
			if err := b.profileCase(ctx, c, bc.method); err != nil {
				return nil, fmt.Errorf("profile %s: %w", bc, err)
			}
		}
	}
	b.load[1] = loadavg()
	return res, nil
}

// anchor is the tool the targets are set against: the newest nix copy.
func (b *bench) anchor() string {
	if b.newer != nil {
		return toolNixNewer
	}
	return toolNixCopy
}

// label names a tool in the log and the table.
func (b *bench) label(tool string) string {
	switch tool {
	case toolOurs:
		return "mkbinarycache"
	case toolOursGoXz:
		return "mkbinarycache, pure Go xz"
	case toolNixCopy:
		return "nix copy " + shortVersion(b.newest.name)
	case toolNixNewer:
		return "nix copy " + shortVersion(b.newer.name)
	case toolNixCopy28:
		return "nix copy " + shortVersion(b.host.name)
	case toolNixpkgs:
		return "nixpkgs method"
	case toolFloor:
		return fmt.Sprintf("floor: zstd -T%d", runtime.NumCPU())
	}
	return tool
}

// shortVersion is major.minor of a version.
func shortVersion(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// once runs one tool into a fresh directory, times it and checks the output.
func (b *bench) once(ctx context.Context, c *builtClosure, method, tool string, r int) (sample, error) {
	out := filepath.Join(b.outputs, c.name+"-out-"+method+"-"+tool)
	if err := os.RemoveAll(out); err != nil {
		return sample{}, err
	}
	result := filepath.Join(b.work, "timing.json")
	e := b.newest
	var vars, argv []string
	switch tool {
	case toolOurs, toolOursGoXz:
		argv = append([]string{b.ours}, b.oursArgs(c, out, method)...)
		if tool == toolOursGoXz {
			argv = append(argv, "--xz-program", "none")
		}
	case toolNixCopy, toolNixNewer, toolNixCopy28:
		argv = []string{"nix", "--extra-experimental-features", "nix-command", "copy",
			"--to", "file://" + out + "?compression=" + method, c.root}
		if tool == toolNixNewer {
			e = b.newer
		}
		if tool == toolNixCopy28 {
			e = b.host
			// Nix remembers narinfos of binary caches in ~/.cache.
			cache := filepath.Join(b.work, "xdg-cache")
			if err := os.RemoveAll(cache); err != nil {
				return sample{}, err
			}
			vars = []string{"XDG_CACHE_HOME=" + cache}
		}
	case toolNixpkgs:
		// As nixpkgs' mkBinaryCache calls its builder.
		if err := os.MkdirAll(out, 0o755); err != nil {
			return sample{}, err
		}
		vars = []string{"out=" + out, "NIX_STORE=/nix/store", "NIX_ATTRS_JSON_FILE=" + c.attrs,
			"NIX_BUILD_CORES=" + strconv.Itoa(runtime.NumCPU())}
		argv = []string{"python3", b.model, "--compression", method}
	case toolFloor:
		if err := os.MkdirAll(out, 0o755); err != nil {
			return sample{}, err
		}
		argv = []string{"zstd", "-q", "-f", fmt.Sprintf("-T%d", runtime.NumCPU()), c.nar, "-o", filepath.Join(out, "closure.nar.zst")}
	}
	t, err := e.timed(ctx, b.self, result, vars, argv)
	if err != nil {
		return sample{}, err
	}
	s := sample{wall: t.Wall, cpu: t.CPU, rss: t.MaxRSS}
	if tool == toolFloor {
		s.bytes, err = dirBytes(out)
	} else {
		s.bytes, err = check(c, out, method, r)
	}
	if err != nil {
		return s, fmt.Errorf("check %s: %w", out, err)
	}
	// Keep the disk and the page cache for the next run; the small
	// closure's outputs stay for a look.
	if c.narBytes > 50<<20 || b.outputs != b.work {
		os.RemoveAll(out)
	}
	return s, nil
}

// dumpNAR writes the closure's NAR, every path's `nix-store --dump` one
// after the other, for the floor (untimed).
func (b *bench) dumpNAR(ctx context.Context, c *builtClosure) error {
	c.nar = filepath.Join(b.work, c.name, "closure.nar")
	paths := make([]string, 0, len(c.paths))
	for p := range c.paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	script := "set -e; for p in " + nixtest.ShellQuote(paths...) + "; do nix-store --dump \"$p\"; done > " + nixtest.ShellQuote(c.nar)
	_, err := b.newest.output(ctx, script)
	return err
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func machine(b *bench) string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/1e6)
		}
	}
	nixes := "Nix " + b.newest.name + " (chrooted)"
	if b.newer != nil {
		nixes += ", " + b.newer.name + " (chrooted, a copy of the root with it in /opt)"
	}
	return fmt.Sprintf("%s, %d cores%s, %s; %s and %s (host), one store", cpu, runtime.NumCPU(), mem,
		runtime.Version(), nixes, b.host.name)
}

// toolVersions lists the compressors of the root file system, for the
// table's header.
func (b *bench) toolVersions(ctx context.Context) string {
	out, err := b.newest.output(ctx, "zstd --version; xz --version | head -1; python3 --version")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(out, "\n", "; ")), " ")
}
