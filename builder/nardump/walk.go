package nardump

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"syscall"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkbinarycache/mkbinarycache/builder/listing"
)

// sparseMin is how much of a file must be unallocated before it is read
// hole by hole: seeking costs two system calls per data extent.
const sparseMin = 64 << 10

// errChanged reports a file system object that changed while it was
// dumped: its NAR would be neither the old nor the new one.
var errChanged = errors.New("changed while being dumped")

// node dumps the entry e of the directory dirfd, from "(" to ")". level is
// its depth in Info.MaxDepth's unit.
func (d *Dumper) node(dirfd int, e entry, level int) (*listing.Node, error) {
	if d.err != nil { // w failed: stop reading
		return nil, d.err
	}
	d.depth = max(d.depth, level)
	d.chain = append(d.chain, e)
	defer func() { d.chain = d.chain[:len(d.chain)-1] }()
	if e.kind == dtUnknown && level == 1 {
		// The root of a store path is most often a directory: try that
		// first, saving the look. O_DIRECTORY fails before a device or
		// FIFO would be opened.
		fd, err := openat(dirfd, &d.names[e.off], syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC)
		if err == nil {
			return d.openDirectory(fd, level)
		}
		if err != syscall.ENOTDIR && err != syscall.ELOOP {
			return nil, d.pathErr("open", err)
		}
	}
	if e.kind == dtUnknown {
		// No type from the directory (or the root): look, without
		// opening the object itself, which might be a device.
		fd, err := openat(dirfd, &d.names[e.off], oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC)
		if err != nil {
			return nil, d.pathErr("lstat", err)
		}
		err = fstat(fd, &d.st)
		syscall.Close(fd)
		if err != nil {
			return nil, d.pathErr("lstat", err)
		}
		e.kind = kindOfMode(d.st.Mode)
	}
	switch e.kind {
	case dtReg:
		return d.regular(dirfd, e)
	case dtDir:
		return d.directory(dirfd, e, level)
	case dtLnk:
		return d.symlink(dirfd, e)
	}
	return nil, fmt.Errorf("%s: %s: a NAR holds only regular files, directories and symlinks", d.path(), kindName(e.kind))
}

func kindName(kind uint8) string {
	switch kind {
	case dtFifo:
		return "a named pipe (FIFO)"
	case dtSock:
		return "a socket"
	case dtChr:
		return "a character device"
	case dtBlk:
		return "a block device"
	}
	return "a special file"
}

func (d *Dumper) regular(dirfd int, e entry) (*listing.Node, error) {
	// O_NONBLOCK: should it have become a FIFO, do not wait for a writer.
	fd, err := openat(dirfd, &d.names[e.off], syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC)
	if err != nil {
		return nil, d.pathErr("open", err)
	}
	defer syscall.Close(fd)
	if err := fstat(fd, &d.st); err != nil {
		return nil, d.pathErr("stat", err)
	}
	if d.st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, d.pathErr("open", errChanged)
	}
	size, blocks := d.st.Size, d.st.Blocks
	// Nix marks a file executable when its owner may execute it.
	exec := d.st.Mode&syscall.S_IXUSR != 0
	d.raw(tokOpen + tokTypeRegular)
	if exec {
		d.raw(tokExecutable)
	}
	d.raw(tokContents)
	d.room(8)
	d.buf = appendUint64(d.buf, uint64(size))
	off := d.offset()
	sparse := false
	if size-blocks*512 >= sparseMin {
		if sparse, err = d.sparse(fd, size); err != nil {
			return nil, err
		}
	}
	if !sparse {
		if err := d.contents(fd, size); err != nil {
			return nil, err
		}
	}
	d.raw(zeros8[:pad(size)])
	d.raw(tokClose)
	if !d.Tree {
		return nil, nil
	}
	n := d.newNode()
	n.Type, n.Size, n.Executable, n.NAROffset = nar.TypeRegular, size, exec, off
	return n, nil
}

// contents copies size bytes from fd, read straight into the output
// buffer. It asks for one byte more than it expects, to see a file that
// grew without another read.
func (d *Dumper) contents(fd int, size int64) error {
	left, eof := size, false
	for left > 0 {
		f := d.free(left + 1)
		n, err := read(fd, f)
		if err != nil {
			return d.pathErr("read", err)
		}
		if n == 0 {
			return d.shrunk(size-left, size)
		}
		if int64(n) > left {
			return d.grew(size)
		}
		d.buf = d.buf[:len(d.buf)+n]
		left -= int64(n)
		eof = n < len(f)
	}
	if !eof {
		n, err := read(fd, d.free(1))
		if err != nil {
			return d.pathErr("read", err)
		}
		if n > 0 {
			return d.grew(size)
		}
	}
	return nil
}

// sparse copies size bytes from fd, writing its holes as zeros without
// reading them. It returns false, having written nothing, when the file
// system cannot tell holes.
func (d *Dumper) sparse(fd int, size int64) (bool, error) {
	for off := int64(0); off < size; {
		data, err := seek(fd, off, seekData)
		switch {
		case err == syscall.ENXIO: // only a hole up to the end
			data = size
		case err == syscall.EINVAL && off == 0:
			return false, nil
		case err != nil:
			return true, d.pathErr("lseek", err)
		}
		data = min(data, size)
		d.zeros(data - off)
		if data == size {
			break
		}
		hole, err := seek(fd, data, seekHole)
		if err == syscall.ENXIO { // data is now beyond the end
			return true, d.shrunk(data, size)
		}
		if err != nil {
			return true, d.pathErr("lseek", err)
		}
		for hole = min(hole, size); data < hole; {
			n, err := pread(fd, d.free(hole-data), data)
			if err != nil {
				return true, d.pathErr("read", err)
			}
			if n == 0 {
				return true, d.shrunk(data, size)
			}
			d.buf = d.buf[:len(d.buf)+n]
			data += int64(n)
		}
		off = hole
	}
	// Holes are not read, so a change of size shows only here.
	if err := fstat(fd, &d.st); err != nil {
		return true, d.pathErr("stat", err)
	}
	if d.st.Size < size {
		return true, d.shrunk(d.st.Size, size)
	}
	if d.st.Size > size {
		return true, d.grew(size)
	}
	return true, nil
}

func (d *Dumper) directory(dirfd int, e entry, level int) (*listing.Node, error) {
	fd, err := openat(dirfd, &d.names[e.off], syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC)
	if err != nil {
		return nil, d.pathErr("open", err)
	}
	return d.openDirectory(fd, level)
}

// openDirectory dumps the directory open as fd, and closes it.
func (d *Dumper) openDirectory(fd int, level int) (*listing.Node, error) {
	defer syscall.Close(fd)
	start, namesStart := len(d.ents), len(d.names)
	defer func() { d.ents, d.names = d.ents[:start], d.names[:namesStart] }()
	if err := d.readDir(fd); err != nil {
		return nil, err
	}
	end := len(d.ents)
	// Nix sorts names as std::string does: bytewise.
	slices.SortFunc(d.ents[start:end], func(a, b entry) int {
		return bytes.Compare(d.names[a.off:a.off+a.len], d.names[b.off:b.off+b.len])
	})
	var n *listing.Node
	var names string // all names of the directory, in one allocation
	if d.Tree {
		n = d.newNode()
		n.Type = nar.TypeDirectory
		if end > start {
			n.Entries = make([]listing.Entry, end-start)
			names = string(d.names[namesStart:])
		}
	}
	d.raw(tokOpen + tokTypeDirectory)
	for i := start; i < end; i++ {
		c := d.ents[i] // a copy: children append to d.ents
		d.raw(tokEntryOpenName)
		d.str(d.names[c.off : c.off+c.len])
		d.raw(tokNode)
		child, err := d.node(fd, c, level+1)
		if err != nil {
			return nil, err
		}
		d.raw(tokClose)
		if n != nil {
			n.Entries[i-start] = listing.Entry{Name: names[c.off-namesStart : c.off-namesStart+c.len], Node: child}
		}
	}
	d.raw(tokClose)
	return n, nil
}

// readDir appends the entries of the directory fd to d.ents and their
// names to d.names.
func (d *Dumper) readDir(fd int) error {
	if d.dirent == nil {
		d.dirent = make([]byte, 32<<10)
	}
	for {
		n, err := getdents(fd, d.dirent)
		if err != nil {
			return d.pathErr("getdents", err)
		}
		if n <= 0 {
			return nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8,
		// name NUL-terminated.
		for b := d.dirent[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				return d.pathErr("getdents", syscall.EIO)
			}
			ino := b[0] | b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7]
			kind, name := b[18], b[19:reclen]
			b = b[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			// Like Go's os.ReadDir (the reference in the tests), skip
			// entries of inode 0: absent files.
			if ino == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			d.ents = append(d.ents, entry{off: len(d.names), len: len(name), kind: kind})
			d.names = append(append(d.names, name...), 0)
		}
	}
}

func (d *Dumper) symlink(dirfd int, e entry) (*listing.Node, error) {
	if d.link == nil {
		d.link = make([]byte, 4096) // PATH_MAX: a target is shorter
	}
	var n int
	for {
		var err error
		if n, err = readlinkat(dirfd, &d.names[e.off], d.link); err != nil {
			return nil, d.pathErr("readlink", err)
		}
		if n < len(d.link) {
			break
		}
		d.link = make([]byte, 2*len(d.link))
	}
	d.raw(tokOpen + tokTypeSymlink)
	d.str(d.link[:n])
	d.raw(tokClose)
	if !d.Tree {
		return nil, nil
	}
	node := d.newNode()
	node.Type, node.Target = nar.TypeSymlink, string(d.link[:n])
	return node, nil
}

// newNode allocates tree nodes in slabs, growing with the tree.
func (d *Dumper) newNode() *listing.Node {
	if len(d.slab) == cap(d.slab) {
		d.slab = make([]listing.Node, 0, min(max(2*cap(d.slab), 8), 1024))
	}
	d.slab = d.slab[:len(d.slab)+1]
	return &d.slab[len(d.slab)-1]
}

// path is the path of the current node, for errors.
func (d *Dumper) path() string {
	var b []byte
	for _, e := range d.chain {
		if len(b) > 0 && b[len(b)-1] != '/' {
			b = append(b, '/')
		}
		b = append(b, d.names[e.off:e.off+e.len]...)
	}
	return string(b)
}

func (d *Dumper) pathErr(op string, err error) error {
	return &fs.PathError{Op: op, Path: d.path(), Err: err}
}

func (d *Dumper) shrunk(got, want int64) error {
	return fmt.Errorf("%s: %w: short read: %d of %d bytes", d.path(), errChanged, got, want)
}

func (d *Dumper) grew(want int64) error {
	return fmt.Errorf("%s: %w: more than the %d bytes it had", d.path(), errChanged, want)
}
