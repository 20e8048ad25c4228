package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
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
	bytes    uint64
	rss      int64
	n        int
}

func summarize(ss []sample) summary {
	var sum summary
	ws := make([]time.Duration, len(ss))
	for i, s := range ss {
		ws[i] = s.wall
		sum.bytes = max(sum.bytes, s.bytes)
		sum.rss = max(sum.rss, s.rss)
	}
	sum.min, sum.med, sum.n = slices.Min(ws), median(ws), len(ss)
	return sum
}

// printTable writes a Markdown table; ratios compare medians (time) and
// bytes of mkbinarycache with each anchor: below 1 is better.
func printTable(w io.Writer, cfg *config, b *bench, res results) {
	fmt.Fprintf(w, "Machine: %s\n\n", machine())
	for _, c := range b.closures {
		fmt.Fprintf(w, "%s: %d paths, NAR %.0f MB (%s)\n", strings.ToUpper(c.name), len(c.paths), float64(c.narBytes)/1e6, c.desc)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| closure | method | tool | runs | wall min | wall median | output | peak RSS | time ratio | size ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	tools := append(slices.Clone(cfg.tools), toolFloor)
	for _, c := range b.closures {
		for _, m := range cfg.methods {
			ours, haveOurs := res[key{c.name, m, toolOurs}]
			var o summary
			if haveOurs {
				o = summarize(ours)
			}
			for _, t := range tools {
				ss, ok := res[key{c.name, m, t}]
				if !ok {
					continue
				}
				s := summarize(ss)
				ratioT, ratioB := "", ""
				if haveOurs && t != toolOurs {
					ratioT = fmt.Sprintf("ours %.2f× (%.1f× faster)", o.med.Seconds()/s.med.Seconds(), s.med.Seconds()/o.med.Seconds())
					ratioB = fmt.Sprintf("ours %.3f×", float64(o.bytes)/float64(s.bytes))
				}
				rss := "—"
				if t != toolFloor || s.rss > 0 {
					rss = fmt.Sprintf("%d MB", s.rss>>20)
				}
				fmt.Fprintf(w, "| %s | %s | %s | %d | %.2f s | %.2f s | %.1f MB | %s | %s | %s |\n",
					strings.ToUpper(c.name), m, t, s.n, s.min.Seconds(), s.med.Seconds(), float64(s.bytes)/1e6, rss, ratioT, ratioB)
			}
		}
	}
	notes := slices.Clone(b.notes)
	sort.Strings(notes)
	for _, n := range notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
	fmt.Fprintln(w, "\nPeak RSS is wait4's Maxrss: the largest single process of the tool's process tree.")
}
