package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tmpPrefix starts the names of the temporary files a run writes beside
// their final names (os.CreateTemp(dir, ".tmp-*")).
const tmpPrefix = ".tmp-"

// lockAndClean holds a shared flock on the cache directory for the run, so
// that runs on one cache know of each other, and removes the temporary files
// a killed run left when no other run holds the lock: with the exclusive
// lock, every temporary file is stale, since runs create theirs only under
// the shared lock. A lock dies with its process, so SIGKILL leaves none.
// The returned function releases the lock.
func lockAndClean(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	fh, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	fd := int(fh.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		cleanErr := removeStale(dir)
		// Downgrading lets other runs in; they wait until the cleaning is done.
		if err := syscall.Flock(fd, syscall.LOCK_SH); err != nil {
			fh.Close()
			return nil, fmt.Errorf("lock cache %s: %w", dir, err)
		}
		if cleanErr != nil {
			fh.Close()
			return nil, cleanErr
		}
	} else if errors.Is(err, syscall.EWOULDBLOCK) {
		// Another run is writing: its temporary files are live.
		if err := syscall.Flock(fd, syscall.LOCK_SH); err != nil {
			fh.Close()
			return nil, fmt.Errorf("lock cache %s: %w", dir, err)
		}
	} else {
		// A file system without flock: write without the lock and leave
		// temporary files alone (verify ignores them).
		return func() { fh.Close() }, nil
	}
	return func() { fh.Close() }, nil
}

// removeStale removes the temporary files of killed runs, where runs write
// them: beside narinfos and listings, in nar/ and in debuginfo/.
func removeStale(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "nar"), filepath.Join(dir, "debuginfo")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("clean cache: %w", err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), tmpPrefix) || e.IsDir() {
				continue
			}
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("clean cache: remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}
