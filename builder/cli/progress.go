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
	out         io.Writer
	tty, quiet  bool
	compression compress.Method
	start, last time.Time
	paths, done int
	total, read uint64 // NAR bytes planned and dumped
	drawn       bool
}

func newProgress(out io.Writer, quiet bool, m compress.Method) *progress {
	return &progress{out: out, tty: isTerminal(out), quiet: quiet, compression: m, start: time.Now()}
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
		p.draw(false)
	}
}

func (p *progress) draw(force bool) {
	now := time.Now()
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	secs := max(now.Sub(p.start).Seconds(), 1e-3)
	rate := float64(p.read) / secs
	eta := "?"
	if rate > 0 && p.total >= p.read {
		eta = time.Duration(float64(p.total-p.read) / rate * float64(time.Second)).Round(time.Second).String()
	}
	line := fmt.Sprintf("[%d/%d paths, %s/%s, %s/s, ETA %s]", p.done, p.paths, humanBytes(p.read), humanBytes(p.total), humanBytes(uint64(rate)), eta)
	fmt.Fprintf(p.out, "\r%s\x1b[K", line)
	p.drawn = true
}

// clear removes the progress line, for a line of text or the summary.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.out, "\r\x1b[K")
		p.drawn = false
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
