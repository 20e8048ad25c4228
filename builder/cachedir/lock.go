package cachedir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
type Lock struct{ f *os.File }

// pollInterval is how often a waiting Acquire tries again.
const pollInterval = 20 * time.Millisecond

// Acquire locks the cache at dir, which must exist, in mode, waiting at
// most wait (forever when wait < 0). Commands that add to a cache create
// it first; the others fail on a missing one rather than make it. Whoever gets the lock while no other
// command holds it removes the temporary files a killed run left: runs
// create theirs only under the lock, so then every one is stale. On a file
// system without flock it returns an unlocking lock and leaves temporary
// files alone (verify ignores them).
func Acquire(ctx context.Context, dir string, mode LockMode, wait time.Duration) (*Lock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	l := &Lock{f: f}
	fd := int(f.Fd())
	deadline := time.Now().Add(wait)
	if mode == ReadOnly {
		err = flockWait(ctx, fd, unix.LOCK_SH, deadline, wait < 0)
	} else {
		// Try alone first: the chance to clean up.
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	}
	switch {
	case mode == ReadOnly && (err == nil || unsupported(err)):
		return l, nil
	case err == nil:
		cleanErr := RemoveStale(dir)
		if mode == Shared {
			// Not atomic: another command may get in between, and then
			// this one waits for it as it would have anyway.
			err = flockWait(ctx, fd, unix.LOCK_SH, deadline, wait < 0)
		}
		if err == nil {
			err = cleanErr
		}
	case unsupported(err):
		return l, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		// Others hold it: their temporary files are live.
		how := unix.LOCK_SH
		if mode == Exclusive {
			how = unix.LOCK_EX
		}
		err = flockWait(ctx, fd, how, deadline, wait < 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cache %s: %w", dir, err)
	}
	return l, nil
}

// unsupported reports a file system without flock.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

func flockWait(ctx context.Context, fd, how int, deadline time.Time, forever bool) error {
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
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
func (l *Lock) Release() { l.f.Close() }

// RemoveStale removes the temporary files of killed runs, where runs write
// them: beside narinfos and listings, in nar/ and in debuginfo/. Call it
// only while holding the lock alone.
func RemoveStale(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "nar"), filepath.Join(dir, "debuginfo")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("clean cache: %w", err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), TmpPrefix) || e.IsDir() {
				continue
			}
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("clean cache: remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}

// SyncFS makes everything written so far to the file system holding dir
// durable: one syncfs(2) for a batch of files, where an fsync per file
// would cost a disk flush each.
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
