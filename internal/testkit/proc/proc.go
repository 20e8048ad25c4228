// Package proc starts and waits for the processes tests run, so that no
// wait can hang: every wait has a bound and, past it, kills the process
// and fails the test naming what it waited for.
//
// A process is waited for by one goroutine that then closes a channel, so
// any number of selects may watch it exit: a second receive can never block
// (a value sent on a channel is received once; a closed channel is seen by
// all).
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeout bounds one wait for a process the tests run: far above what any
// of them needs on a loaded machine, far below the package timeout of
// scripts/test.sh (15 minutes), so a hang fails the test that caused it.
const Timeout = 5 * time.Minute

// Proc is a started process.
type Proc struct {
	Cmd  *exec.Cmd
	what string
	done chan struct{}
	err  error
}

// Start starts cmd; what names it in failures (default: its command line).
// Its output must go to writers or files, not StdoutPipe/StderrPipe: it is
// waited for at once, and Wait closes those pipes.
// The process is killed when the test ends if it is still running.
func Start(t testing.TB, cmd *exec.Cmd, what string) *Proc {
	t.Helper()
	if what == "" {
		what = strings.Join(cmd.Args, " ")
	}
	setWaitDelay(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	p := &Proc{Cmd: cmd, what: what, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done // Wait returns once the killed process is reaped
		}
	})
	return p
}

// Done is closed once the process has exited; Err is valid from then on.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what cmd.Wait returned; call it only once Done is closed.
func (p *Proc) Err() error { return p.err }

// Kill sends SIGKILL (a process that already exited is left alone).
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		p.Cmd.Process.Signal(syscall.SIGKILL)
	}
}

// Wait waits for the process to exit and returns what cmd.Wait returned.
// Past timeout it kills the process and fails the test, naming it.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		p.Cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %v: killed", p.what, timeout)
		return nil
	}
}

// Killed reports whether err is the exit of a process SIGKILL ended.
func Killed(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
}

// Run runs cmd to its end, at most timeout: an exit status is returned as
// an error like cmd.Run's; a process still running at the deadline is
// killed and reported as an error that names it and the bound. For
// helpers that return errors rather than fail a test.
func Run(cmd *exec.Cmd, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	setWaitDelay(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	var err error
	go func() {
		err = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %v: killed", strings.Join(cmd.Args, " "), timeout)
	}
}

// setWaitDelay makes Wait return soon after the process exits even when a
// child it left behind still holds its output pipes open (Wait would
// otherwise wait for their copying goroutines).
func setWaitDelay(cmd *exec.Cmd) {
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 10 * time.Second
	}
}

// CombinedOutput is cmd.CombinedOutput bounded as Run is.
func CombinedOutput(cmd *exec.Cmd, timeout time.Duration) ([]byte, error) {
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd, timeout)
	return b.Bytes(), err
}
