package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
)

// progress renders a run's events: on a terminal one line redrawn in place
// (paths and bytes done of the total, rate, ETA), as nix copy shows it;
// elsewhere a line per path. Both end with the summary.
type progress struct {
	statusLine
	quiet       bool
	compression compress.Method
	paths, done int
	total, read uint64 // NAR bytes planned and dumped
}

func newProgress(out io.Writer, quiet bool, m compress.Method) *progress {
	return &progress{statusLine: newStatusLine(out), quiet: quiet, compression: m}
}

// statusLine is one line redrawn in place on a terminal, at most every
// 100 ms: "[3/10 paths, 1.0/2.0 MiB, 1.0 MiB/s, ETA 1s]".
type statusLine struct {
	out         io.Writer
	tty, drawn  bool
	start, last time.Time
}

func newStatusLine(out io.Writer) statusLine {
	return statusLine{out: out, tty: isTerminal(out), start: time.Now()}
}

// draw shows done of total items (what) and bytes of totalBytes.
func (l *statusLine) draw(done, total int, what string, bytes, totalBytes uint64) {
	now := time.Now()
	if now.Sub(l.last) < 100*time.Millisecond {
		return
	}
	l.last = now
	bytes = min(bytes, totalBytes)
	rate := float64(bytes) / max(now.Sub(l.start).Seconds(), 1e-3)
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(totalBytes-bytes) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(l.out, "\r[%d/%d %s, %s/%s, %s/s, ETA %s]\x1b[K", done, total, what,
		humanBytes(bytes), humanBytes(totalBytes), humanBytes(uint64(rate)), eta)
	l.drawn = true
}

// clear removes the line, for a line of text or the summary.
func (l *statusLine) clear() {
	if l.drawn {
		fmt.Fprint(l.out, "\r\x1b[K")
		l.drawn = false
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// event is the cache.Writer's callback.
func (p *progress) event(e cache.Event) {
	if p.quiet && e.Kind != cache.Warning {
		return
	}
	switch e.Kind {
	case cache.Planned:
		p.paths, p.total = e.Paths, e.NarBytes
	case cache.Progress:
		p.read += e.NarBytes
	case cache.Skipped:
		if !p.tty {
			fmt.Fprintf(p.out, "%s: already in the cache\n", e.Path)
		}
	case cache.Warning:
		p.clear()
		fmt.Fprintf(p.out, "warning: %s: %s\n", e.Path, e.Msg)
	case cache.Written:
		p.done++
		if !p.tty {
			fmt.Fprintf(p.out, "%s: NAR %s, %s %s\n", e.Path, humanBytes(e.NarBytes), p.compression, humanBytes(e.FileBytes))
		}
	}
	if p.tty {
		p.draw(p.done, p.paths, "paths", p.read, p.total)
	}
}

// summary ends the output of a run.
func (p *progress) summary(s cache.Stats) {
	p.clear()
	if p.quiet {
		return
	}
	ratio := 0.0
	if s.NarBytes > 0 {
		ratio = float64(s.FileBytes) / float64(s.NarBytes)
	}
	secs := s.Elapsed.Seconds()
	fmt.Fprintf(p.out, "%d paths (%d already present): NAR %s -> %s %s (ratio %.3f) in %.2fs, %s/s\n",
		s.Paths, s.Skipped, humanBytes(s.NarBytes), p.compression, humanBytes(s.FileBytes), ratio, secs,
		humanBytes(uint64(float64(s.NarBytes)/max(secs, 1e-9))))
}

// humanBytes formats a byte count with binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
