package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// profileRun is the profile subcommand: mkbinarycache's CLI, in this
// process, under the CPU profiler. It is the same code as the binary.
func profileRun(ctx context.Context, cpuFile string, args []string) error {
	f, err := os.Create(cpuFile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("%s: %w", cpuFile, err)
	}
	code := cli.Main(ctx, args, cli.Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr})
	pprof.StopCPUProfile()
	if code != cli.ExitOK {
		return fmt.Errorf("mkbinarycache %s: exit status %d", strings.Join(args, " "), code)
	}
	return f.Close()
}

// profileCase writes, for one case, the CPU profile of mkbinarycache
// (`go tool pprof -top`) and the system calls of mkbinarycache and of the
// newest nix copy (`strace -c -f`), with the calls per store path.
// oursArgs are mkbinarycache's arguments for a timed or profiled run.
func (b *bench) oursArgs(c *builtClosure, out, method string) []string {
	return append([]string{"--out", out, "--attrs", c.attrs, "--compression", method, "--quiet"}, b.cfg.args...)
}

func (b *bench) profileCase(ctx context.Context, c *builtClosure, method string) error {
	dir := b.cfg.profile
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := c.name + "-" + method
	out := filepath.Join(b.outputs, c.name+"-out-profile")
	tmp := filepath.Join(b.work, "profile.tmp")
	ours := b.oursArgs(c, out, method)

	b.logf("%s: CPU profile of mkbinarycache", name)
	os.RemoveAll(out)
	if _, err := b.newest.output(ctx, "exec "+nixtest.ShellQuote(append([]string{b.self, "profile", tmp, "--"}, ours...)...)); err != nil {
		return err
	}
	for _, view := range []struct {
		suffix string
		extra  []string
	}{{"flat", nil}, {"cum", []string{"-cum"}}} {
		args := append([]string{"tool", "pprof", "-top", "-nodecount=40"}, view.extra...)
		top, err := exec.CommandContext(ctx, "go", append(args, b.self, tmp)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof %s: %w\n%s", tmp, err, top)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pprof-"+view.suffix+".txt"), top, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".cpu.pprof")); err != nil {
		// Another file system: keep the text only.
		os.Remove(tmp)
	}

	var summary strings.Builder
	fmt.Fprintf(&summary, "%s: %d paths, NAR %.1f MB\n", name, len(c.paths), float64(c.narBytes)/1e6)
	nixCopy := []string{"nix", "copy", "--to", "file://" + out + "?compression=" + method, c.root}
	type traced struct {
		label string
		e     *env
		argv  []string
	}
	straced := []traced{
		{"mkbinarycache", b.newest, append([]string{b.ours}, ours...)},
		{"nix copy " + shortVersion(b.newest.name), b.newest, nixCopy},
	}
	if b.newer != nil {
		straced = append(straced, traced{"nix copy " + shortVersion(b.newer.name), b.newer, nixCopy})
	}
	for _, t := range straced {
		b.logf("%s: system calls of %s", name, t.label)
		os.RemoveAll(out)
		if _, err := t.e.output(ctx, "exec "+nixtest.ShellQuote(append([]string{"strace", "-c", "-f", "-o", tmp}, t.argv...)...)); err != nil {
			return err
		}
		data, err := os.ReadFile(tmp)
		if err != nil {
			return err
		}
		file := filepath.Join(dir, name+"."+strings.ReplaceAll(strings.ReplaceAll(t.label, " ", "-"), ".", "_")+".strace.txt")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
		calls, top := straceTotals(string(data))
		fmt.Fprintf(&summary, "%s: %d system calls, %.1f per path; most per path:", t.label, calls, float64(calls)/float64(len(c.paths)))
		for _, s := range top {
			fmt.Fprintf(&summary, " %s %.1f", s.name, float64(s.calls)/float64(len(c.paths)))
		}
		summary.WriteString("\n")
	}
	os.RemoveAll(out)
	os.Remove(tmp)
	b.logf("%s", strings.TrimSpace(summary.String()))
	return os.WriteFile(filepath.Join(dir, name+".summary.txt"), []byte(summary.String()), 0o644)
}

type syscallCount struct {
	name  string
	calls int
}

// straceRow is a row of strace -c: % time, seconds, usecs/call, calls,
// [errors], syscall.
var straceRow = regexp.MustCompile(`^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$`)

// straceTotals returns the total calls of strace -c output and its eight
// most frequent system calls.
func straceTotals(s string) (int, []syscallCount) {
	var rows []syscallCount
	total := 0
	for _, line := range strings.Split(s, "\n") {
		m := straceRow.FindStringSubmatch(line)
		if m == nil || m[2] == "total" {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		rows = append(rows, syscallCount{m[2], n})
		total += n
	}
	slices.SortStableFunc(rows, func(a, b syscallCount) int { return cmp.Compare(b.calls, a.calls) })
	if len(rows) > 8 {
		rows = rows[:8]
	}
	return total, rows
}
