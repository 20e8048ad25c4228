package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// terminal records what a meter wrote, and signals each write.
type terminal struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newTerminal() *terminal { return &terminal{wrote: make(chan struct{}, 100)} }

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wrote <- struct{}{}
	return t.buf.Write(p)
}

func (t *terminal) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// terminalMeter is a meter that takes out for a terminal, redraws when
// the test sends a tick, and whose clock the test sets.
func terminalMeter(out *terminal, clock *time.Time) (*meter, chan time.Time) {
	tick := make(chan time.Time)
	m := newMeter(out, "paths", false)
	m.tty = true
	m.now = func() time.Time { return *clock }
	m.start = *clock
	m.ticker = func() (<-chan time.Time, func()) { return tick, func() {} }
	return m, tick
}

// A stalled run's status line still moves: it is redrawn on the timer,
// with the rate and ETA of the time passed, not on events only.
func TestMeterRedrawsOnTimer(t *testing.T) {
	out := newTerminal()
	clock := time.Unix(0, 0)
	m, tick := terminalMeter(out, &clock)
	m.plan(4, 4<<20)
	m.add(1 << 20)
	clock = clock.Add(time.Second)
	tick <- clock
	<-out.wrote
	clock = clock.Add(time.Second) // stalled: no event, the rate falls
	tick <- clock
	<-out.wrote
	m.notice("warning: %s", "careful")
	m.finish("4 paths")
	want := "\r[0/4 paths, 1.0 MiB/4.0 MiB, 1.0 MiB/s, ETA 3s]\x1b[K" +
		"\r[0/4 paths, 1.0 MiB/4.0 MiB, 512.0 KiB/s, ETA 6s]\x1b[K" +
		"\r\x1b[Kwarning: careful\n" +
		"4 paths\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("terminal output (-want +got):\n%q", d)
	}
	// No redraw after finish: no goroutine takes a tick.
	select {
	case tick <- clock:
		t.Error("redrawn after finish")
	default:
	}
}

// Off a terminal: a plain line per item, warnings, the summary; no status
// line and no timer. The hook (brief) prints no line per item.
func TestMeterPlainLines(t *testing.T) {
	for _, tc := range []struct {
		name         string
		quiet, brief bool
		want         string
	}{
		{"plain", false, false, "a: written\nb: skipped\nwarning: w\nsummary\n"},
		{"quiet", true, false, "warning: w\n"},
		{"brief", false, true, "warning: w\nsummary\n"},
	} {
		var out bytes.Buffer
		m := newMeter(&out, "paths", tc.quiet)
		m.brief = tc.brief
		m.ticker = func() (<-chan time.Time, func()) { panic("a timer off a terminal") }
		m.plan(2, 10)
		m.add(5)
		m.done("a: written")
		m.info("b: skipped")
		m.notice("warning: %s", "w")
		m.finish("summary")
		if got := out.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A result line (stdout) clears the status line first.
func TestMeterResult(t *testing.T) {
	var stdout bytes.Buffer
	out := newTerminal()
	clock := time.Unix(0, 0)
	m, tick := terminalMeter(out, &clock)
	m.done("")
	tick <- clock
	<-out.wrote
	m.result(&stdout, "/nix/store/x")
	m.finish("")
	if got := out.String(); !strings.HasSuffix(got, "\r\x1b[K") || !strings.HasPrefix(got, "\r[1 paths, 0s]") {
		t.Errorf("stderr %q", got)
	}
	if stdout.String() != "/nix/store/x\n" {
		t.Errorf("stdout %q", stdout.String())
	}
}
