package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// Tools, in table order.
const (
	toolOurs    = "mkbinarycache"
	toolNixCopy = "nix copy"
	toolNixpkgs = "nixpkgs model"
	toolFloor   = "floor: zstd -T0"
)

type config struct {
	closures []string // big, many, tiny
	methods  []string
	tools    []string
	runs     int
	work     string // keep outputs here; "" for a temporary dir removed at the end
	args     []string
	quick    bool
	floor    bool
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("cachebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	closures := fs.String("closures", "big,many", "closures to measure: big, many, tiny (comma-separated)")
	methods := fs.String("methods", "zstd,xz,none", "compression methods (comma-separated)")
	tools := fs.String("tools", "ours,nixcopy,nixpkgs", "tools to run: ours, nixcopy, nixpkgs (comma-separated)")
	runs := fs.Int("runs", 3, "timed runs of each tool, method and closure")
	work := fs.String("work", "", "keep closures' attrs and outputs under `DIR` (default: a temporary dir, removed)")
	extra := fs.String("args", "", "extra arguments for mkbinarycache (space-separated), e.g. \"--jobs 1\"")
	floor := fs.Bool("floor", true, "measure the zstd floor (the closure's NAR through zstd -T0)")
	quick := fs.Bool("quick", false, "a tiny closure and 1 run: checks the harness in seconds")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := &config{closures: split(*closures), methods: split(*methods), tools: split(*tools),
		runs: *runs, work: *work, args: strings.Fields(*extra), quick: *quick, floor: *floor}
	if c.quick {
		c.closures, c.runs = []string{"tiny"}, 1
	}
	for _, cl := range c.closures {
		if _, ok := closureSpecs[cl]; !ok {
			return nil, fmt.Errorf("unknown closure %q (big, many, tiny)", cl)
		}
	}
	for _, m := range c.methods {
		if _, err := compress.Parse(m); err != nil {
			return nil, err
		}
	}
	for i, t := range c.tools {
		switch t {
		case "ours":
			c.tools[i] = toolOurs
		case "nixcopy":
			c.tools[i] = toolNixCopy
		case "nixpkgs":
			c.tools[i] = toolNixpkgs
		default:
			return nil, fmt.Errorf("unknown tool %q (ours, nixcopy, nixpkgs)", t)
		}
	}
	if c.runs < 1 {
		return nil, errors.New("-runs must be at least 1")
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
	root     string // the repo
	work     string
	tmpWork  bool
	ours     string // the mkbinarycache binary
	nixpkgs  string // nixpkgs_ref.py, or "" when ../shared is absent
	notes    []string
	closures []*builtClosure
}

func newBench(cfg *config, log io.Writer) (*bench, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	root, err := nixtest.FindRoot(wd)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, log: log, root: root, work: cfg.work}
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "cachebench-"); err != nil {
			return nil, err
		}
		b.tmpWork = true
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.tools, toolNixpkgs) {
		ref := filepath.Join(root, "..", "shared", "bench", "nixpkgs_ref.py")
		if _, err := os.Stat(ref); err == nil {
			b.nixpkgs = ref
		} else {
			b.notes = append(b.notes, fmt.Sprintf("nixpkgs model skipped: %s not found (it needs the ../shared dir beside the repo)", ref))
			cfg.tools = slices.DeleteFunc(cfg.tools, func(t string) bool { return t == toolNixpkgs })
		}
	}
	return b, nil
}

func (b *bench) cleanup() {
	if b.tmpWork {
		os.RemoveAll(b.work)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "cachebench: "+format+"\n", args...)
}

// setup builds the binary and the closures.
func (b *bench) setup() error {
	if slices.Contains(b.cfg.tools, toolOurs) {
		b.logf("building mkbinarycache (CGO_ENABLED=0)")
		dir, err := nixtest.GoBuild(b.root, "./builder/cmd/mkbinarycache", "mkbinarycache")
		if err != nil {
			return err
		}
		b.ours = filepath.Join(dir, "bin", "mkbinarycache")
	}
	bb, err := nixtest.MakeBusyboxDir()
	if err != nil {
		return err
	}
	for _, name := range b.cfg.closures {
		c, err := b.buildClosure(name, bb)
		if err != nil {
			return fmt.Errorf("closure %s: %w", name, err)
		}
		b.closures = append(b.closures, c)
	}
	return nil
}

var badNameChars = regexp.MustCompile(`[^a-zA-Z0-9+._?=-]`)

func (b *bench) buildClosure(name, bb string) (*builtClosure, error) {
	spec := closureSpecs[name]
	dirs, err := spec.dirs()
	if err != nil {
		return nil, err
	}
	b.logf("importing closure %s: %d paths (%s)", name, len(dirs), spec.desc)
	dir := filepath.Join(b.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var expr strings.Builder
	fmt.Fprintf(&expr, "let bb = builtins.path { path = %s; name = \"busybox\"; };\n  paths = [\n", nixtest.NixString(bb))
	for _, d := range dirs {
		n := "bench-" + badNameChars.ReplaceAllString(filepath.Base(d), "_")
		fmt.Fprintf(&expr, "    (builtins.path { path = %s; name = %s; })\n", nixtest.NixString(d), nixtest.NixString(n))
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
	out, err := nixtest.Exec(nil, "nix-build", exprFile, "--option", "sandbox", "true", "--no-out-link")
	if err != nil {
		return nil, err
	}
	c := &builtClosure{name: name, desc: spec.desc, root: strings.TrimSpace(string(out))}

	attrsExpr := nixtest.AttrsExpr(bb, map[string]string{"name": nixtest.NixString("bench-" + name + "-attrs")},
		[]string{nixtest.StorePathExpr(c.root)})
	attrsFile := filepath.Join(dir, "attrs.nix")
	if err := os.WriteFile(attrsFile, []byte(attrsExpr), 0o644); err != nil {
		return nil, err
	}
	out, err = nixtest.Exec(nil, "nix-build", attrsFile, "--option", "sandbox", "true", "--no-out-link")
	if err != nil {
		return nil, err
	}
	c.attrs = filepath.Join(dir, "attrs.json")
	if err := nixtest.CopyFile(strings.TrimSpace(string(out)), c.attrs, 0o644); err != nil {
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
	bytes uint64 // every file of the output
	rss   int64  // bytes
}

type key struct{ closure, method, tool string }

type results map[key][]sample

func (b *bench) run(ctx context.Context) (results, error) {
	if err := b.setup(); err != nil {
		return nil, err
	}
	res := results{}
	for _, c := range b.closures {
		if b.cfg.floor && slices.Contains(b.cfg.methods, "zstd") {
			if err := b.floor(ctx, c, res); err != nil {
				return nil, err
			}
		}
		for r := range b.cfg.runs {
			for _, m := range b.cfg.methods {
				// Rotate the order of the tools so none always runs on a
				// page cache warmed (or a machine loaded) by another.
				n := len(b.cfg.tools)
				for i := range n {
					tool := b.cfg.tools[(i+r)%n]
					s, err := b.once(ctx, c, m, tool, r)
					if err != nil {
						return nil, fmt.Errorf("%s %s %s run %d: %w", c.name, m, tool, r+1, err)
					}
					k := key{c.name, m, tool}
					res[k] = append(res[k], s)
					b.logf("%s %s %-14s run %d: %6.2fs %8.1f MB  RSS %4d MB", c.name, m, tool, r+1,
						s.wall.Seconds(), float64(s.bytes)/1e6, s.rss>>20)
				}
			}
		}
	}
	return res, nil
}

// once runs one tool into a fresh directory, times it and checks the output.
func (b *bench) once(ctx context.Context, c *builtClosure, method, tool string, r int) (sample, error) {
	out := filepath.Join(b.work, c.name, fmt.Sprintf("out-%s-%s-%d", method, strings.ReplaceAll(tool, " ", ""), r))
	if err := os.RemoveAll(out); err != nil {
		return sample{}, err
	}
	var cmd *exec.Cmd
	switch tool {
	case toolOurs:
		args := append([]string{"--out", out, "--attrs", c.attrs, "--compression", method, "--quiet"}, b.cfg.args...)
		cmd = exec.CommandContext(ctx, b.ours, args...)
	case toolNixCopy:
		cmd = exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command", "copy",
			"--to", "file://"+out+"?compression="+method, c.root)
	case toolNixpkgs:
		if err := os.MkdirAll(out, 0o755); err != nil {
			return sample{}, err
		}
		cmd = exec.CommandContext(ctx, "python3", b.nixpkgs, c.attrs, out, method)
	}
	s, err := timed(cmd)
	if err != nil {
		return s, err
	}
	if s.bytes, err = b.check(c, out, method, r); err != nil {
		return s, fmt.Errorf("check %s: %w", out, err)
	}
	if b.cfg.work == "" || c.narBytes > 50<<20 {
		os.RemoveAll(out) // keep the disk and page cache for the next run
	}
	return s, nil
}

// timed runs cmd and measures its wall time and peak RSS (wait4's Maxrss:
// the largest single process of the tree that was waited for).
func timed(cmd *exec.Cmd) (sample, error) {
	var errBuf strings.Builder
	cmd.Stdout = &errBuf
	cmd.Stderr = &errBuf
	start := time.Now()
	err := cmd.Run()
	s := sample{wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.rss = ru.Maxrss << 10 // KiB on Linux
		}
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, errBuf.String())
	}
	return s, nil
}

// check verifies a cache: one narinfo per path, each NarHash and NarSize as
// Nix recorded them, and one NAR (the largest on the first run, then others
// in turn) decompressed and hashed against its narinfo.
func (b *bench) check(c *builtClosure, dir, method string, r int) (uint64, error) {
	var total uint64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += uint64(fi.Size())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	infos, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil {
		return 0, err
	}
	if len(infos) != len(c.paths) {
		return 0, fmt.Errorf("%d narinfo files, want %d", len(infos), len(c.paths))
	}
	var nis []*narinfo.NarInfo
	for _, f := range infos {
		ni, err := readNarInfo(f)
		if err != nil {
			return 0, err
		}
		want, ok := c.paths[ni.StorePath]
		if !ok {
			return 0, fmt.Errorf("%s: %s is not in the closure", f, ni.StorePath)
		}
		wantHash, err := nixhash.ParseAny(want.NarHash, nil)
		if err != nil {
			return 0, err
		}
		if ni.NarHash.String() != nixhash.MustNewHashWithEncoding(wantHash.Algo(), wantHash.Digest(), nixhash.NixBase32, true).String() || ni.NarSize != want.NarSize {
			return 0, fmt.Errorf("%s: NarHash %s NarSize %d, Nix recorded %s %d", f, ni.NarHash, ni.NarSize, want.NarHash, want.NarSize)
		}
		if ni.Compression != method && !(method == "none" && ni.Compression == "") {
			return 0, fmt.Errorf("%s: Compression %q, want %q", f, ni.Compression, method)
		}
		nis = append(nis, ni)
	}
	sort.Slice(nis, func(i, j int) bool { return nis[i].NarSize > nis[j].NarSize })
	ni := nis[r%len(nis)]
	if err := checkNAR(dir, ni); err != nil {
		return 0, err
	}
	return total, nil
}

func readNarInfo(path string) (*narinfo.NarInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ni, err := narinfo.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ni, nil
}

// checkNAR decompresses the NAR of ni and compares its size and hash, and
// the file's, with the narinfo.
func checkNAR(dir string, ni *narinfo.NarInfo) error {
	f, err := os.Open(filepath.Join(dir, ni.URL))
	if err != nil {
		return err
	}
	defer f.Close()
	fileHash := sha256.New()
	m := compress.Method(ni.Compression)
	if m == "" {
		m = compress.Bzip2
	}
	dec, err := compress.NewReader(io.TeeReader(f, fileHash), m)
	if err != nil {
		return err
	}
	narHash := sha256.New()
	n, err := io.Copy(narHash, dec)
	if err != nil {
		return fmt.Errorf("%s: decompress: %w", ni.URL, err)
	}
	dec.Close()
	if _, err := io.Copy(fileHash, f); err != nil { // trailing bytes, if the decoder stopped early
		return err
	}
	if uint64(n) != ni.NarSize || !slices.Equal(narHash.Sum(nil), ni.NarHash.Digest()) {
		return fmt.Errorf("%s: the NAR (%d bytes) does not match NarHash/NarSize of %s", ni.URL, n, ni.StorePath)
	}
	if ni.FileHash != nil && !slices.Equal(fileHash.Sum(nil), ni.FileHash.Digest()) {
		return fmt.Errorf("%s: FileHash does not match the file", ni.URL)
	}
	return nil
}

// floor dumps the closure's NAR once (untimed) and times zstd -T0 on it.
func (b *bench) floor(ctx context.Context, c *builtClosure, res results) error {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.notes = append(b.notes, "zstd floor skipped: no zstd on PATH")
		return nil
	}
	c.nar = filepath.Join(b.work, c.name, "closure.nar")
	f, err := os.Create(c.nar)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(c.paths))
	for p := range c.paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		cmd := exec.CommandContext(ctx, "nix-store", "--dump", p)
		cmd.Stdout = f
		if err := cmd.Run(); err != nil {
			f.Close()
			return fmt.Errorf("nix-store --dump %s: %w", p, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	defer os.Remove(c.nar)
	for r := range b.cfg.runs {
		out := c.nar + ".zst"
		s, err := timed(exec.CommandContext(ctx, "zstd", "-q", "-f", "-T0", c.nar, "-o", out))
		if err != nil {
			return err
		}
		if fi, err := os.Stat(out); err == nil {
			s.bytes = uint64(fi.Size())
		}
		os.Remove(out)
		k := key{c.name, "zstd", toolFloor}
		res[k] = append(res[k], s)
		b.logf("%s zstd %-14s run %d: %6.2fs %8.1f MB", c.name, toolFloor, r+1, s.wall.Seconds(), float64(s.bytes)/1e6)
	}
	return nil
}

func machine() string {
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
	nixv := ""
	if out, err := exec.Command("nix", "--version").Output(); err == nil {
		nixv = ", " + strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%s, %d cores%s, %s%s", cpu, runtime.NumCPU(), mem, runtime.Version(), nixv)
}
