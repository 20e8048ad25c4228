package proc

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The exit of a process that ends by itself before anyone waits is seen by
// every receive and by Wait: the pattern that hung a test (a select took
// the one value an exit channel carried, a later receive waited forever).
func TestExitSeenByEveryWaiter(t *testing.T) {
	p := Start(t, exec.Command("true"), "true")
	<-p.Done()
	<-p.Done()
	p.Kill() // after the exit: nothing to signal
	if err := p.Wait(t, time.Minute); err != nil {
		t.Errorf("Wait after the exit: %v", err)
	}
	if err := p.Wait(t, time.Minute); err != nil {
		t.Errorf("second Wait: %v", err)
	}
}

// fakeTB records a Fatalf and stops its goroutine, as testing.T does.
type fakeTB struct {
	testing.TB
	msg      string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A process that outlives its bound is killed, and the failure names it.
func TestWaitBounded(t *testing.T) {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		p := Start(f, exec.Command("sleep", "60"), "a sleeper")
		p.Wait(f, 200*time.Millisecond)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Wait did not return within a minute of its 200 ms bound")
	}
	if want := "a sleeper did not exit within 200ms: killed"; f.msg != want {
		t.Errorf("failure %q, want %q", f.msg, want)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Wait took %v", d)
	}
	for _, fn := range f.cleanups {
		fn()
	}
}

// Run reports a process past its bound as an error naming it.
func TestRunBounded(t *testing.T) {
	err := Run(exec.Command("sleep", "60"), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "sleep 60 did not exit within 200ms") {
		t.Errorf("Run: %v", err)
	}
	if err := Run(exec.Command("false"), time.Minute); err == nil || Killed(err) {
		t.Errorf("Run(false): %v, want an exit status", err)
	}
}
