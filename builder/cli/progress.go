package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// meter is the one progress renderer of every command: the command counts
// items (paths, objects, narinfos) and bytes into it from the events of
// the package doing the work, and it renders them. On a terminal that is
// one status line, "[3/10 paths, 1.0/2.0 MiB, 1.0 MiB/s, ETA 1s]",
// redrawn on a timer, so that a stalled run's rate and ETA still move;
// elsewhere (a log, CI, Nix's build log) it is plain lines, one per item
// done, and no status line. Both end with the command's summary.
//
// It writes to stderr: progress, warnings and summaries are for a human;
// stdout carries only the results a script reads (docs/architecture.md).
type meter struct {
	out    io.Writer
	what   string // the items counted: "paths", "objects"
	tty    bool
	quiet  bool   // only warnings
	brief  bool   // no line per item, even off a terminal (the hook)
	prefix string // of notices

	mu                sync.Mutex
	start             time.Time
	now               func() time.Time
	items, totalItems int
	bytes, totalBytes uint64
	drawn, finished   bool

	// ticker starts the redraw timer (time.NewTicker's, but in tests).
	ticker        func() (<-chan time.Time, func())
	stop, stopped chan struct{} // of the redraws, once started
}

// redrawEvery is how often a terminal's status line is redrawn.
const redrawEvery = 200 * time.Millisecond

// newMeter returns a meter rendering to out, which is a terminal or not.
func newMeter(out io.Writer, what string, quiet bool) *meter {
	m := &meter{out: out, what: what, quiet: quiet, tty: isTerminal(out), now: time.Now,
		ticker: func() (<-chan time.Time, func()) {
			t := time.NewTicker(redrawEvery)
			return t.C, t.Stop
		}}
	m.start = m.now()
	return m
}

// started starts the redraws on a terminal, at the first count, so that a
// command that fails before its work leaves nothing running (m.mu held).
func (m *meter) started() {
	if !m.tty || m.quiet || m.finished || m.stop != nil {
		return
	}
	tick, stopTicker := m.ticker()
	stop, stopped := make(chan struct{}), make(chan struct{})
	m.stop, m.stopped = stop, stopped
	go func() {
		defer close(stopped)
		defer stopTicker()
		for {
			select {
			case <-stop:
				return
			case <-tick:
				m.mu.Lock()
				m.draw()
				m.mu.Unlock()
			}
		}
	}()
}

// plan sets the totals: items to do, of bytes bytes.
func (m *meter) plan(items int, bytes uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started()
	m.totalItems, m.totalBytes = items, bytes
}

// add counts bytes of work done.
func (m *meter) add(bytes uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started()
	m.bytes += bytes
}

// done counts an item done; off a terminal it prints line, if any.
func (m *meter) done(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started()
	m.items++
	if line != "" {
		m.itemLine(line)
	}
}

// itemLine prints a line about one item, off a terminal only.
func (m *meter) itemLine(line string) {
	if !m.tty && !m.quiet && !m.brief {
		fmt.Fprintln(m.out, line)
	}
}

// info prints a line about one item that is not counted (skipped).
func (m *meter) info(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.itemLine(line)
}

// notice prints a line wherever, quiet or not (a warning), above the
// status line.
func (m *meter) notice(format string, a ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clear()
	fmt.Fprintf(m.out, m.prefix+format+"\n", a...)
}

// warn prints a warning about what (a path, a file, an object).
func (m *meter) warn(what, msg string) { m.notice("warning: %s: %s", what, msg) }

// skipped says that the invalid entry what was skipped.
func (m *meter) skipped(what, msg string) {
	if what == "" {
		m.notice("skipped: %s", msg)
		return
	}
	m.notice("skipped invalid entry %s: %s", what, msg)
}

// Write prints notices written whole, as the upstream client's warnings.
func (m *meter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clear()
	return m.out.Write(p)
}

// result prints a line of the command's result to w (stdout), clearing
// the status line first should both be the terminal.
func (m *meter) result(w io.Writer, line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clear()
	fmt.Fprintln(w, line)
}

// finish stops the redraws, clears the status line and prints the
// summary, unless quiet or summary is "".
func (m *meter) finish(summary string) {
	m.mu.Lock()
	stop, stopped := m.stop, m.stopped
	m.stop, m.finished = nil, true
	m.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clear()
	if summary != "" && !m.quiet {
		fmt.Fprintln(m.out, summary)
	}
}

// elapsed is the time since the meter started.
func (m *meter) elapsed() time.Duration { return m.now().Sub(m.start) }

// draw shows the status line (m.mu held).
func (m *meter) draw() {
	bytes := min(m.bytes, m.totalBytes) // retried parts count twice
	secs := max(m.elapsed().Seconds(), 1e-3)
	rate := float64(bytes) / secs
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(m.totalBytes-bytes) / rate * float64(time.Second)).Round(time.Second).String()
	}
	if m.totalItems == 0 && m.totalBytes == 0 {
		// No plan (gc, sign, verify): what is done so far.
		fmt.Fprintf(m.out, "\r[%d %s, %s]\x1b[K", m.items, m.what, m.elapsed().Round(time.Second))
	} else {
		fmt.Fprintf(m.out, "\r[%d/%d %s, %s/%s, %s/s, ETA %s]\x1b[K", m.items, m.totalItems, m.what,
			humanBytes(bytes), humanBytes(m.totalBytes), humanBytes(uint64(rate)), eta)
	}
	m.drawn = true
}

// clear removes the status line (m.mu held).
func (m *meter) clear() {
	if m.drawn {
		fmt.Fprint(m.out, "\r\x1b[K")
		m.drawn = false
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

// rate formats bytes done in d as a rate.
func rate(bytes uint64, d time.Duration) string {
	return humanBytes(uint64(float64(bytes)/max(d.Seconds(), 1e-9))) + "/s"
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
