package cachedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

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
// TmpPrefix file, renamed into place. Either way it lives in one directory
// of the cache, held open, and is named there: never through a symlink.
type File struct {
	*os.File
	d     *Dir
	sub   string // its directory, relative to the cache
	dirfd int
	tmp   string // the TmpPrefix name, or "" for an unnamed file
}

// Create starts a new file in the directory sub of the cache ("" for its
// top), which must be a real directory.
func (d *Dir) Create(sub string) (*File, error) {
	var dirfd int
	var err error
	if sub == "" {
		dirfd, err = openatRetry(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	} else {
		dirfd, err = d.openat(sub, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if err != nil {
		return nil, fmt.Errorf("create a file in %s: %w", d.Name(sub), err)
	}
	f := &File{d: d, sub: sub, dirfd: dirfd}
	// Read-write: if it cannot be linked, Publish copies it.
	fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		f.File = os.NewFile(uintptr(fd), d.Name(sub)+"/(new file)")
		return f, nil
	}
	// Kernels before 3.11 say EISDIR, file systems without it EOPNOTSUPP.
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		unix.Close(dirfd)
		return nil, &fs.PathError{Op: "create a file in", Path: d.Name(sub), Err: err}
	}
	if err := f.createNamed(); err != nil {
		unix.Close(dirfd)
		return nil, err
	}
	return f, nil
}

// createNamed makes f a new TmpPrefix file.
func (f *File) createNamed() error {
	for try := 0; ; try++ {
		name := TmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(f.dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			f.tmp = name
			f.File = os.NewFile(uintptr(fd), f.d.Name(f.rel(name)))
			return nil
		}
		if !errors.Is(err, unix.EEXIST) || try == 10 {
			return &fs.PathError{Op: "create a file in", Path: f.d.Name(f.sub), Err: err}
		}
	}
}

func (f *File) rel(name string) string {
	if f.sub == "" {
		return name
	}
	return f.sub + "/" + name
}

// checkName accepts one plain component of a path.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("%q is not a file name", name)
	}
	return nil
}

// Publish gives the complete file the name name in its directory,
// replacing any entry of that name at once (a symlink itself, never its
// target), with permissions perm, and closes it. On failure the file is
// discarded.
func (f *File) Publish(name string, perm os.FileMode) error {
	defer unix.Close(f.dirfd)
	if err := checkName(name); err != nil {
		f.discard()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.discard()
		return err
	}
	if f.tmp != "" {
		err := f.File.Close()
		if err == nil {
			err = unix.Renameat(f.dirfd, f.tmp, f.dirfd, name)
		}
		if err != nil {
			unix.Unlinkat(f.dirfd, f.tmp, 0)
			return &fs.PathError{Op: "publish", Path: f.d.Name(f.rel(name)), Err: err}
		}
		return nil
	}
	err := f.link(name)
	if cerr := f.File.Close(); err == nil && cerr != nil {
		unix.Unlinkat(f.dirfd, name, 0)
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "publish", Path: f.d.Name(f.rel(name)), Err: err}
	}
	return nil
}

// Abort discards an unpublished file.
func (f *File) Abort() {
	f.discard()
	unix.Close(f.dirfd)
}

func (f *File) discard() {
	f.File.Close()
	if f.tmp != "" {
		unix.Unlinkat(f.dirfd, f.tmp, 0)
	}
}

// link names the unnamed file: through /proc (as open(2) shows), else with
// AT_EMPTY_PATH (which may need CAP_DAC_READ_SEARCH), else by copying it.
// linkat never replaces a file: an existing name is replaced by a rename.
func (f *File) link(name string) error {
	target := name
	for try := 0; ; try++ {
		err := f.linkFD(target)
		switch {
		case err == nil && target == name:
			return nil
		case err == nil:
			if err := unix.Renameat(f.dirfd, target, f.dirfd, name); err != nil {
				unix.Unlinkat(f.dirfd, target, 0)
				return err
			}
			return nil
		case errors.Is(err, unix.EEXIST) && try < 10:
			target = TmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
		case errors.Is(err, unix.EEXIST):
			return err
		default:
			return f.copyTo(name)
		}
	}
}

func (f *File) linkFD(name string) error {
	fd := int(f.Fd())
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), f.dirfd, name, unix.AT_SYMLINK_FOLLOW)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		if err2 := unix.Linkat(fd, "", f.dirfd, name, unix.AT_EMPTY_PATH); err2 == nil || errors.Is(err2, unix.EEXIST) {
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
	dirfd, err := unix.Dup(f.dirfd)
	if err != nil {
		return err
	}
	tmp := &File{d: f.d, sub: f.sub, dirfd: dirfd}
	if err := tmp.createNamed(); err != nil {
		unix.Close(dirfd)
		return err
	}
	if _, err := io.Copy(tmp, io.NewSectionReader(f.File, 0, size)); err != nil {
		tmp.Abort()
		return err
	}
	return tmp.Publish(name, fi.Mode().Perm())
}

// WriteFile writes data to a new file and publishes it as rel with
// permissions perm, so that readers and interrupted runs see the old file
// or the new one, never a part.
func (d *Dir) WriteFile(rel string, data []byte, perm os.FileMode) error {
	if err := checkRel(rel); err != nil {
		return fmt.Errorf("write %s: %w", d.Name(rel), err)
	}
	sub, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		sub, name = rel[:i], rel[i+1:]
	}
	f, err := d.Create(sub)
	if err != nil {
		return fmt.Errorf("write %s: %w", d.Name(rel), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", d.Name(rel), err)
	}
	if err := f.Publish(name, perm); err != nil {
		return fmt.Errorf("write %s: %w", d.Name(rel), err)
	}
	return nil
}
