package cachedir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// LockMode says how a command holds a cache.
type LockMode int

// The lock modes: commands that add files share the cache; gc, which
// removes them, holds it alone; readers that must change nothing (a
// source of copy, a gc --dry-run, a read-only cache) share it without
// creating the directory or removing stale temporary files.
const (
	Shared LockMode = iota
	Exclusive
	ReadOnly
)

// ErrBusy is returned (wrapped) when the lock was not had within the wait.
var ErrBusy = errors.New("the cache is locked by another command")

// Lock is a held lock on a cache directory: an flock on the directory
// itself, which dies with its process, so a SIGKILL leaves no stale lock.
type Lock struct {
	fd        int
	supported bool
}

// Supported reports whether the file system locked the cache. Where it
// has no flock, Lock returns a lock that holds nothing: gc, which removes
// files, must then refuse to run, and writers should say so.
func (l *Lock) Supported() bool { return l.supported }

// NoFlock begins what every command says of a cache whose file system
// cannot lock it.
const NoFlock = "the file system cannot lock the cache (no flock)"

// UnlockedWarning is the warning of a command that adds to or reads a
// cache it could not lock: a gc could remove what (what it adds, reads).
func UnlockedWarning(what string) string {
	return NoFlock + ": a gc running meanwhile could remove " + what
}

// pollInterval is how often a waiting Lock tries again.
const pollInterval = 20 * time.Millisecond

type flockKey struct{}

// WithFlock returns a context in which Lock calls flock instead of
// flock(2): for tests of what commands do on a file system without it.
func WithFlock(ctx context.Context, flock func(fd, how int) error) context.Context {
	return context.WithValue(ctx, flockKey{}, flock)
}

// Lock locks the cache in mode, waiting at most wait; zero (or negative)
// waits as long as it takes, as for net/http's timeouts. Whoever gets the
// lock while no other command holds it removes the temporary files a
// killed run left: runs create theirs only under the lock, so then every
// one is stale. On a file system without flock it
// returns a lock that is not Supported, and leaves temporary files alone
// (every listing skips them).
func (d *Dir) Lock(ctx context.Context, mode LockMode, wait time.Duration) (*Lock, error) {
	flock, _ := ctx.Value(flockKey{}).(func(fd, how int) error)
	if flock == nil {
		flock = unix.Flock
	}
	fd, err := openatRetry(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("lock cache %s: %w", d.path, err)
	}
	l := &Lock{fd: fd, supported: true}
	deadline, forever := time.Now().Add(wait), wait <= 0
	if mode == ReadOnly {
		err = flockWait(ctx, flock, fd, unix.LOCK_SH, deadline, forever)
	} else {
		// Try alone first: the chance to clean up.
		err = flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	}
	switch {
	case unsupported(err):
		l.supported = false
		return l, nil
	case mode == ReadOnly && err == nil:
		return l, nil
	case err == nil:
		cleanErr := d.RemoveStale()
		if mode == Shared {
			// Not atomic: another command may get in between, and then
			// this one waits for it as it would have anyway.
			err = flockWait(ctx, flock, fd, unix.LOCK_SH, deadline, forever)
		}
		if err == nil {
			err = cleanErr
		}
	case errors.Is(err, unix.EWOULDBLOCK):
		// Others hold it: their temporary files are live.
		how := unix.LOCK_SH
		if mode == Exclusive {
			how = unix.LOCK_EX
		}
		err = flockWait(ctx, flock, fd, how, deadline, forever)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock cache %s: %w", d.path, err)
	}
	return l, nil
}

// unsupported reports a file system without flock.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

func flockWait(ctx context.Context, flock func(int, int) error, fd, how int, deadline time.Time, forever bool) error {
	for {
		err := flock(fd, how|unix.LOCK_NB)
		if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if !forever && time.Now().After(deadline) {
			return ErrBusy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// Release unlocks the cache.
func (l *Lock) Release() { unix.Close(l.fd) }

// RemoveStale removes the temporary files of killed runs, where runs write
// them: beside narinfos and listings, in nar/ and in debuginfo/ (each only
// when a real directory). Call it only while holding the lock alone.
func (d *Dir) RemoveStale() error {
	for _, sub := range []string{"", "nar", "debuginfo"} {
		entries, err := d.list(sub)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalidEntry) {
				continue
			}
			return fmt.Errorf("clean cache: %w", err)
		}
		for _, e := range entries {
			if !IsTemp(e.Name) || e.Type.IsDir() {
				continue
			}
			if err := d.Remove(e.Rel(sub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("clean cache: remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}
