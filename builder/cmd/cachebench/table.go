package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

func median(ws []time.Duration) time.Duration {
	s := slices.Clone(ws)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type summary struct {
	min, med time.Duration
	cpu      time.Duration // the least CPU time of the runs
	bytes    uint64
	rss      int64
	n        int
}

func summarize(ss []sample) summary {
	var sum summary
	ws := make([]time.Duration, len(ss))
	sum.cpu = ss[0].cpu
	for i, s := range ss {
		ws[i] = s.wall
		sum.cpu = min(sum.cpu, s.cpu)
		sum.bytes = max(sum.bytes, s.bytes)
		sum.rss = max(sum.rss, s.rss)
	}
	sum.min, sum.med, sum.n = slices.Min(ws), median(ws), len(ss)
	return sum
}

func (r results) get(c benchCase, tool string) (summary, bool) {
	ss, ok := r[key{c, tool}]
	if !ok || len(ss) == 0 {
		return summary{}, false
	}
	return summarize(ss), true
}

// faster words a ratio of times, anchor over ours.
func faster(r float64) string {
	if r < 1 {
		return fmt.Sprintf("%.2f× (slower)", r)
	}
	return fmt.Sprintf("%.2f× faster", r)
}

func mb(n uint64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// printTable writes the Markdown table and the targets. Time ratios compare
// minimums (the run least disturbed by the rest of the machine).
func printTable(w io.Writer, b *bench, res results) {
	fmt.Fprintf(w, "Machine: %s\n", machine(b))
	if b.versions != "" {
		fmt.Fprintf(w, "In the root file system: %s\n", b.versions)
	}
	fmt.Fprintf(w, "Load average (1, 5, 15 min): %s at the start, %s at the end\n", b.load[0], b.load[1])
	fmt.Fprintf(w, "Output written to %s (%s)\n\n", b.outputs, fsType(b.outputs))
	names := make([]string, 0, len(b.closures))
	for n := range b.closures {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := b.closures[n]
		fmt.Fprintf(w, "- %s: %d paths, NAR %.0f MB (%s)\n", strings.ToUpper(c.name), len(c.paths), float64(c.narBytes)/1e6, c.desc)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | tool | runs | wall min | wall median | CPU | output | peak RSS | mkbinarycache is | output ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, bc := range b.cfg.cases {
		o, haveOurs := res.get(bc, toolOurs)
		nc, haveNC := res.get(bc, b.anchor())
		for _, t := range allTools {
			s, ok := res.get(bc, t)
			if !ok {
				continue
			}
			ratioT, ratioB := "", ""
			switch {
			case t == toolOurs:
			case t == toolOursGoXz:
				if haveNC {
					ratioT = fmt.Sprintf("(this row vs %s: %s)", b.label(b.anchor()), faster(nc.min.Seconds()/s.min.Seconds()))
					ratioB = fmt.Sprintf("(%.3f×)", float64(s.bytes)/float64(nc.bytes))
				}
			case !haveOurs:
			case t == toolFloor:
				ratioT = fmt.Sprintf("%.2f× the floor", o.min.Seconds()/s.min.Seconds())
				ratioB = fmt.Sprintf("%.3f×", float64(o.bytes)/float64(s.bytes))
			default:
				ratioT = faster(s.min.Seconds() / o.min.Seconds())
				ratioB = fmt.Sprintf("%.3f×", float64(o.bytes)/float64(s.bytes))
			}
			rss := "—"
			if s.rss > 0 {
				rss = fmt.Sprintf("%d MB", s.rss>>20)
			}
			fmt.Fprintf(w, "| %s %s | %s | %d | %.2f s | %.2f s | %.2f s | %s | %s | %s | %s |\n",
				strings.ToUpper(bc.closure), bc.method, b.label(t), s.n, s.min.Seconds(), s.med.Seconds(), s.cpu.Seconds(), mb(s.bytes), rss, ratioT, ratioB)
		}
	}
	fmt.Fprintln(w, "\nmkbinarycache is: the row's minimum wall time over mkbinarycache's (the floor: the other way round).")
	fmt.Fprintln(w, "CPU: the least user and system time of the runs, of the tool and every process it waited for.")
	fmt.Fprintln(w, "Output ratio: mkbinarycache's output over the row's (all files of the cache).")
	fmt.Fprintf(w, "Peak RSS: wait4's Maxrss, the VmHWM of the largest process of the tool's tree.\n")
	fmt.Fprintf(w, "%s runs with the host's binaries on the same store, bound on /nix in a private mount namespace.\n",
		b.label(toolNixCopy28))
	if ts := targets(b, res); len(ts) > 0 {
		fmt.Fprintln(w, "\n| target | measured | holds? |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, t := range ts {
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.desc, t.measured, t.holds)
		}
	}
	notes := slices.Clone(b.notes)
	sort.Strings(notes)
	for _, n := range notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
}

// fsType names the kind of file system dir is on: tmpfs or a disk's.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs"
	case 0xef53:
		return "ext4, on disk"
	}
	return fmt.Sprintf("file system type %#x, on disk", st.Type)
}

type target struct{ desc, measured, holds string }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// targets evaluates the project's speed, size and memory targets on the
// cases that were measured.
func targets(b *bench, res results) []target {
	var out []target
	nc := b.label(b.anchor())
	for _, s := range []struct {
		closure       string
		faster, floor float64
	}{{"many", 1.5, 2}, {"big", 1.3, 1.3}} {
		bc := benchCase{s.closure, "zstd"}
		o, ok := res.get(bc, toolOurs)
		if !ok {
			continue
		}
		name := strings.ToUpper(s.closure)
		if n, ok := res.get(bc, b.anchor()); ok {
			r := n.min.Seconds() / o.min.Seconds()
			out = append(out, target{fmt.Sprintf("zstd %s ≥ %.1f× faster than %s", name, s.faster, nc),
				fmt.Sprintf("%s (%.2f s vs %.2f s)", faster(r), o.min.Seconds(), n.min.Seconds()), yes(r >= s.faster)})
			sr := float64(o.bytes) / float64(n.bytes)
			out = append(out, target{fmt.Sprintf("zstd %s output ≤ 1.01× %s's", name, nc), fmt.Sprintf("%.3f×", sr), yes(sr <= 1.01)})
		}
		if f, ok := res.get(bc, toolFloor); ok {
			r := o.min.Seconds() / f.min.Seconds()
			out = append(out, target{fmt.Sprintf("zstd %s within %.1f× of the floor", name, s.floor),
				fmt.Sprintf("%.2f× (%.2f s vs %.2f s)", r, o.min.Seconds(), f.min.Seconds()), yes(r <= s.floor)})
		}
	}
	for _, cl := range []string{"many", "big"} {
		bc := benchCase{cl, "xz"}
		n, ok := res.get(bc, b.anchor())
		if !ok {
			continue
		}
		for _, t := range []string{toolOurs, toolOursGoXz} {
			o, ok := res.get(bc, t)
			if !ok {
				continue
			}
			r, sr := n.min.Seconds()/o.min.Seconds(), float64(o.bytes)/float64(n.bytes)
			out = append(out, target{fmt.Sprintf("xz %s as fast as %s at ≤ 1.03× its output (%s)", strings.ToUpper(cl), nc, b.label(t)),
				fmt.Sprintf("%s (%.1f s vs %.1f s), %.3f× the output", faster(r), o.min.Seconds(), n.min.Seconds(), sr), yes(r >= 1 && sr <= 1.03)})
		}
	}
	var peak int64
	var which []string
	for _, bc := range b.cfg.cases {
		if bc.closure != "big" {
			continue
		}
		for _, t := range []string{toolOurs, toolOursGoXz} {
			if o, ok := res.get(bc, t); ok {
				peak = max(peak, o.rss)
				label := bc.method
				if t == toolOursGoXz {
					label += " (pure Go)"
				}
				which = append(which, fmt.Sprintf("%s %d MB", label, o.rss>>20))
			}
		}
	}
	if len(which) > 0 {
		out = append(out, target{"peak RSS ≤ 300 MB on BIG", strings.Join(which, ", "), yes(peak <= 300<<20)})
	}
	return out
}
