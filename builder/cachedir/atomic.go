package cachedir

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// TmpPrefix starts the names of the temporary files written beside their
// final names: a run holding the lock alone removes those a killed run left.
const TmpPrefix = ".tmp-"

// File is a new file of a cache directory, which no reader sees until
// Publish names it whole. Where the kernel and the file system allow, it
// is an unnamed file (O_TMPFILE), linked into place: creating it does not
// lock the directory, so workers that write many small NARs into nar/ at
// once do not queue for it twice a file (a create and a rename) but once
// (the link), and a killed run leaves nothing behind. Elsewhere it is a
// TmpPrefix file, renamed into place.
type File struct {
	*os.File
	named bool // a TmpPrefix file, renamed by Publish
}

// Create starts a new file in dir.
func Create(dir string) (*File, error) {
	// Read-write: if it cannot be linked, Publish copies it.
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return &File{File: os.NewFile(uintptr(fd), filepath.Join(dir, "(new file)"))}, nil
	}
	// Kernels before 3.11 say EISDIR, file systems without it EOPNOTSUPP.
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "create a file in", Path: dir, Err: err}
	}
	return createNamed(dir)
}

// createNamed starts a new file in dir as a TmpPrefix file.
func createNamed(dir string) (*File, error) {
	f, err := os.CreateTemp(dir, TmpPrefix+"*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, named: true}, nil
}

// Publish gives the complete file the name name, replacing any file of
// that name at once, with permissions perm, and closes it. On failure
// the file is discarded.
func (f *File) Publish(name string, perm os.FileMode) error {
	if err := f.Chmod(perm); err != nil {
		f.Abort()
		return err
	}
	if f.named {
		err := f.File.Close()
		if err == nil {
			err = os.Rename(f.Name(), name)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}
	err := f.link(name)
	if cerr := f.File.Close(); err == nil && cerr != nil {
		os.Remove(name)
		err = cerr
	}
	return err
}

// Abort discards an unpublished file.
func (f *File) Abort() {
	f.File.Close()
	if f.named {
		os.Remove(f.Name())
	}
}

// link names the unnamed file: through /proc (as open(2) shows), else with
// AT_EMPTY_PATH (which may need CAP_DAC_READ_SEARCH), else by copying it.
// linkat never replaces a file: an existing name is replaced by a rename.
func (f *File) link(name string) error {
	target := name
	for try := 0; ; try++ {
		err := linkFD(int(f.Fd()), target)
		switch {
		case err == nil && target == name:
			return nil
		case err == nil:
			if err := os.Rename(target, name); err != nil {
				os.Remove(target)
				return err
			}
			return nil
		case errors.Is(err, unix.EEXIST) && try < 10:
			target = filepath.Join(filepath.Dir(name), TmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		case errors.Is(err, unix.EEXIST):
			return &os.LinkError{Op: "link", Old: f.Name(), New: target, Err: err}
		default:
			return f.copyTo(name)
		}
	}
}

func linkFD(fd int, name string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		if err2 := unix.Linkat(fd, "", unix.AT_FDCWD, name, unix.AT_EMPTY_PATH); err2 == nil || errors.Is(err2, unix.EEXIST) {
			return err2
		}
	}
	return err
}

// copyTo writes the unnamed file's content to a named temporary file and
// renames that to name: for a system that lets no unnamed file be linked.
func (f *File) copyTo(name string) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	tmp, err := createNamed(filepath.Dir(name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, io.NewSectionReader(f.File, 0, size)); err != nil {
		tmp.Abort()
		return err
	}
	return tmp.Publish(name, fi.Mode().Perm())
}

// WriteFile writes data to a new file and publishes it as name with
// permissions perm, so that readers and interrupted runs see the old file
// or the new one, never a part.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	f, err := Create(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Publish(name, perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
