package cachedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrNotCache is returned (wrapped) for a directory without nix-cache-info.
var ErrNotCache = errors.New("not a binary cache (no nix-cache-info)")

// ErrInvalidEntry is what every EntryError is: an entry that a cache may
// not hold where it is. Commands never follow such an entry; what else
// they do with it is theirs (verify reports it, gc removes it, copy and
// push skip it).
var ErrInvalidEntry = errors.New("invalid cache entry")

// EntryError names an invalid entry and says what is wrong with it, never
// what it holds.
type EntryError struct {
	Name string // the entry's path, the cache directory included
	What string
}

func (e *EntryError) Error() string        { return Printable(e.Name) + ": " + e.What }
func (e *EntryError) Is(target error) bool { return target == ErrInvalidEntry }

// Printable is name, quoted when it holds a byte that could forge a line
// of output (a newline, any control character) or is not UTF-8: a name
// in a cache is untrusted.
func Printable(name string) string {
	if !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

// What EntryError.What says of a symbolic link.
const symlinkWhat = "a symbolic link (not followed)"

// Dir is an open cache directory. Every file of a cache is opened, listed,
// created and removed through it, by a name relative to the directory: a
// slash-separated path of plain components. Nothing inside the cache is
// trusted: no symbolic link is ever followed, in any component, and only
// regular files and real directories count. The directory itself, the
// caller's argument, may be reached through symlinks (a result link).
//
// Names resolve with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) where
// the kernel has it; where it does not (before 5.6, or a seccomp filter
// that answers EPERM) they resolve one component at a time from directory
// descriptors, each opened with O_NOFOLLOW.
type Dir struct {
	path     string
	fd       int
	fallback atomic.Bool // openat2 is unavailable: walk
	// openat2 is unix.Openat2, or a test's stand-in for a kernel without it.
	openat2 func(dirfd int, path string, how *unix.OpenHow) (int, error)
}

// Open opens the existing cache directory path.
func Open(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open cache", Path: path, Err: err}
	}
	return &Dir{path: path, fd: fd, openat2: unix.Openat2}, nil
}

// Ensure creates the directory path, with its parents, unless it exists,
// and opens it: for the commands that add to a cache.
func Ensure(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	return Open(path)
}

// Close closes the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is the directory as it was opened.
func (d *Dir) Path() string { return d.path }

// Name is the path of the entry rel, for messages.
func (d *Dir) Name(rel string) string { return filepath.Join(d.path, filepath.FromSlash(rel)) }

// checkRel accepts a relative slash-separated path of plain components.
func checkRel(rel string) error {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return fmt.Errorf("%q is not a relative path", rel)
	}
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%q is not a plain relative path", rel)
		}
	}
	return nil
}

// openat opens rel beneath d with flags (O_NOFOLLOW and O_CLOEXEC added),
// following no symlink.
func (d *Dir) openat(rel string, flags int) (int, error) {
	if err := checkRel(rel); err != nil {
		return -1, &fs.PathError{Op: "open", Path: d.Name(rel), Err: err}
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	for try := 0; !d.fallback.Load(); try++ {
		fd, err := d.openat2(d.fd, rel, &unix.OpenHow{Flags: uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN) && try < 8:
			// A rename raced with the lookup: look again.
		case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.EAGAIN):
			// No openat2 here (old kernel, seccomp), or one that keeps
			// failing: the walk holds the same rules.
			d.fallback.Store(true)
		default:
			return -1, d.explain(rel, "open", err)
		}
	}
	return d.walk(rel, flags)
}

// walk opens rel one component at a time, each directory with O_NOFOLLOW
// and checked by fstat.
func (d *Dir) walk(rel string, flags int) (int, error) {
	comps := strings.Split(rel, "/")
	cur := d.fd
	closeCur := func() {
		if cur != d.fd {
			unix.Close(cur)
		}
	}
	for _, c := range comps[:len(comps)-1] {
		fd, err := openatRetry(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		closeCur()
		if err != nil {
			return -1, d.explain(rel, "open", err)
		}
		cur = fd
		var st unix.Stat_t
		if err := unix.Fstat(cur, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			closeCur()
			return -1, d.explain(rel, "open", unix.ENOTDIR)
		}
	}
	fd, err := openatRetry(cur, comps[len(comps)-1], flags)
	closeCur()
	if err != nil {
		return -1, d.explain(rel, "open", err)
	}
	return fd, nil
}

func openatRetry(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// explain turns the error of a lookup of rel into one that names the
// entry at fault: the first symlink or non-directory on the way.
func (d *Dir) explain(rel, op string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
		comps := strings.Split(rel, "/")
		for i := range comps {
			prefix := strings.Join(comps[:i+1], "/")
			var st unix.Stat_t
			if unix.Fstatat(d.fd, prefix, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				break
			}
			switch mode := st.Mode & unix.S_IFMT; {
			case mode == unix.S_IFLNK:
				return &EntryError{Name: d.Name(prefix), What: symlinkWhat}
			case mode != unix.S_IFDIR && (i < len(comps)-1 || errors.Is(err, unix.ENOTDIR)):
				// On the way, or opened as a directory.
				return &EntryError{Name: d.Name(prefix), What: "not a directory but " + DescribeMode(unixMode(st.Mode))}
			}
		}
	}
	return &fs.PathError{Op: op, Path: d.Name(rel), Err: err}
}

// Open opens the regular file rel for reading. A FIFO does not block the
// open (O_NONBLOCK), and anything but a regular file is an EntryError.
func (d *Dir) Open(rel string) (*os.File, error) {
	fd, err := d.openat(rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return onlyRegular(os.NewFile(uintptr(fd), d.Name(rel)), func(m fs.FileMode) error { return d.regular(rel, m) })
}

// ReadFile reads the regular file rel.
func (d *Dir) ReadFile(rel string) ([]byte, error) {
	f, err := d.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ReadFileMax reads the regular file rel, failing when it holds more than
// max bytes, before reading them.
func (d *Dir) ReadFileMax(rel string, max int64) ([]byte, error) {
	f, err := d.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		return nil, &EntryError{Name: d.Name(rel), What: fmt.Sprintf("larger than %d bytes", max)}
	}
	return data, err
}

// Has reports whether the regular file rel exists. Any other entry of
// that name is an EntryError: a writer must not take a symlink for a file
// it has, nor write through it.
func (d *Dir) Has(rel string) (bool, error) {
	fi, err := d.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := d.regular(rel, fi.Mode()); err != nil {
		return false, err
	}
	return true, nil
}

// regular is nil for a regular file's mode m, else the EntryError of the
// entry rel, of mode m, where a regular file must be.
func (d *Dir) regular(rel string, m fs.FileMode) error {
	switch {
	case m.IsRegular():
		return nil
	case m&fs.ModeSymlink != 0:
		return &EntryError{Name: d.Name(rel), What: symlinkWhat}
	}
	return &EntryError{Name: d.Name(rel), What: "not a regular file but " + DescribeMode(m)}
}

// NotRegular is the EntryError of a listed entry that is not a regular
// file where one must be.
func (d *Dir) NotRegular(e Entry, sub string) error { return d.regular(e.Rel(sub), e.Type) }

// Rel returns the name, relative to the cache, of the entry an EntryError
// of d names; ok is false for any other error.
func (d *Dir) Rel(err error) (rel string, ok bool) {
	var ee *EntryError
	if !errors.As(err, &ee) {
		return "", false
	}
	rel, ok = strings.CutPrefix(ee.Name, d.Name("")+"/")
	return filepath.ToSlash(rel), ok
}

// parent opens the directory holding rel (d's own descriptor for a name
// at the top) and returns it with rel's last component.
func (d *Dir) parent(rel string) (dirfd int, base string, done func(), err error) {
	if err := checkRel(rel); err != nil {
		return -1, "", nil, &fs.PathError{Op: "open", Path: d.Name(rel), Err: err}
	}
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return d.fd, rel, func() {}, nil
	}
	fd, err := d.openat(rel[:i], unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, "", nil, err
	}
	return fd, rel[i+1:], func() { unix.Close(fd) }, nil
}

// Lstat describes the entry rel itself: a symlink is described, not
// followed.
func (d *Dir) Lstat(rel string) (fs.FileInfo, error) {
	dirfd, base, done, err := d.parent(rel)
	if err != nil {
		return nil, err
	}
	defer done()
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.Name(rel), Err: err}
	}
	return &statInfo{name: base, st: st}, nil
}

// Remove removes the entry rel itself, a symlink included (never its
// target); not a directory.
func (d *Dir) Remove(rel string) error {
	dirfd, base, done, err := d.parent(rel)
	if err != nil {
		return err
	}
	defer done()
	if err := unix.Unlinkat(dirfd, base, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: d.Name(rel), Err: err}
	}
	return nil
}

// maxRemoveDepth bounds RemoveAll's descent into a hostile tree.
const maxRemoveDepth = 256

// RemoveAll removes the entry rel itself: a file or symlink as Remove
// does, a directory with everything in it, never following a symlink.
func (d *Dir) RemoveAll(rel string) error {
	dirfd, base, done, err := d.parent(rel)
	if err != nil {
		return err
	}
	defer done()
	if err := removeAt(dirfd, base, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: d.Name(rel), Err: err}
	}
	return nil
}

func removeAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	if depth >= maxRemoveDepth {
		return fmt.Errorf("nested deeper than %d directories", maxRemoveDepth)
	}
	fd, err := openatRetry(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	ents, err := f.ReadDir(-1)
	if err == nil {
		for _, e := range ents {
			if err = removeAt(fd, e.Name(), depth+1); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// Entry is one entry of a listed directory.
type Entry struct {
	Name string      // its name in the directory
	Type fs.FileMode // its type bits, of the entry itself (a symlink is one)
}

// Rel is the entry's name relative to the cache, for the directory sub.
func (e Entry) Rel(sub string) string {
	if sub == "" {
		return e.Name
	}
	return sub + "/" + e.Name
}

// List lists the directory sub ("" for the cache's top), sorted by name,
// without temporary files (IsTemp). A sub that is missing is an error
// wrapping fs.ErrNotExist; one that is not a real directory, an
// EntryError.
func (d *Dir) List(sub string) ([]Entry, error) {
	all, err := d.list(sub)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(e Entry) bool { return IsTemp(e.Name) }), nil
}

func (d *Dir) list(sub string) ([]Entry, error) {
	var fd int
	var err error
	if sub == "" {
		fd, err = openatRetry(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
		if err != nil {
			err = &fs.PathError{Op: "open", Path: d.path, Err: err}
		}
	} else {
		fd, err = d.openat(sub, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.Name(sub))
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Name(sub), err)
	}
	out := make([]Entry, 0, len(ents))
	for _, e := range ents {
		out = append(out, Entry{Name: e.Name(), Type: e.Type()})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CheckLayout returns an EntryError for each of Dirs that exists but is
// not a real directory.
func (d *Dir) CheckLayout() []error {
	var errs []error
	for _, sub := range Dirs {
		fi, err := d.Lstat(sub)
		if err != nil {
			continue
		}
		if !fi.IsDir() {
			errs = append(errs, d.notDir(sub, fi.Mode()))
		}
	}
	return errs
}

func (d *Dir) notDir(sub string, m fs.FileMode) error {
	what := "not a directory but " + DescribeMode(m)
	if m&fs.ModeSymlink != 0 {
		what = "a symbolic link where a directory must be (not followed)"
	} else if m.IsRegular() {
		what = "a regular file where a directory must be"
	}
	return &EntryError{Name: d.Name(sub), What: what}
}

// MkdirLayout creates the directories of Dirs that are missing; one that
// exists as anything but a real directory is an EntryError, and nothing is
// created through it.
func (d *Dir) MkdirLayout() error {
	for _, sub := range Dirs {
		err := unix.Mkdirat(d.fd, sub, 0o755)
		if err == nil || !errors.Is(err, unix.EEXIST) {
			if err != nil {
				return &fs.PathError{Op: "create cache: mkdir", Path: d.Name(sub), Err: err}
			}
			continue
		}
		fi, err := d.Lstat(sub)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return d.notDir(sub, fi.Mode())
		}
	}
	return nil
}

// SyncFS makes everything written so far to the file system holding the
// cache durable: one syncfs(2) for a batch of files, where an fsync per
// file would cost a disk flush each.
func (d *Dir) SyncFS() error {
	if err := unix.Syncfs(d.fd); err != nil {
		return fmt.Errorf("sync %s: %w", d.path, err)
	}
	return nil
}

// SameAs reports whether d and other are the same directory.
func (d *Dir) SameAs(other *Dir) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(d.fd, &a); err != nil {
		return false, err
	}
	if err := unix.Fstat(other.fd, &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// IsTemp reports a temporary file of a writer: a name starting with
// TmpPrefix. Listings leave them out; the run that holds the lock alone
// removes them.
func IsTemp(name string) bool { return strings.HasPrefix(name, TmpPrefix) }

// statInfo is an fs.FileInfo from fstatat.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) Mode() fs.FileMode  { return unixMode(s.st.Mode) }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) Sys() any           { return &s.st }

func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return mode
}
