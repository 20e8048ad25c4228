package nardump

import (
	"syscall"
	"unsafe"
)

// The system calls of the walk, on NUL-terminated names kept in the
// Dumper: the syscall package's string-taking wrappers allocate a copy of
// the name on every call.

const (
	atFDCWD = -0x64

	dtUnknown = syscall.DT_UNKNOWN
	dtReg     = syscall.DT_REG
	dtDir     = syscall.DT_DIR
	dtLnk     = syscall.DT_LNK
	dtFifo    = syscall.DT_FIFO
	dtSock    = syscall.DT_SOCK
	dtChr     = syscall.DT_CHR
	dtBlk     = syscall.DT_BLK

	oPath = 0x200000 // O_PATH on amd64, arm64 and riscv64; not in package syscall

	seekData = 3 // SEEK_DATA, Linux >= 3.1
	seekHole = 4 // SEEK_HOLE
)

type statBuf = syscall.Stat_t

// openat opens the NUL-terminated name (name[0] is its first byte).
func openat(dirfd int, name *byte, flags int) (int, error) {
	for {
		r, _, e := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(flags), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// readlinkat reads the target of the NUL-terminated name into buf.
func readlinkat(dirfd int, name *byte, buf []byte) (int, error) {
	r, _, e := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func fstat(fd int, st *statBuf) error {
	for {
		if err := syscall.Fstat(fd, st); err != syscall.EINTR {
			return err
		}
	}
}

func read(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func pread(fd int, p []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pread(fd, p, off)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func seek(fd int, off int64, whence int) (int64, error) {
	return syscall.Seek(fd, off, whence)
}

// kindOfMode maps a stat mode to a dirent type.
func kindOfMode(mode uint32) uint8 {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return dtReg
	case syscall.S_IFDIR:
		return dtDir
	case syscall.S_IFLNK:
		return dtLnk
	case syscall.S_IFIFO:
		return dtFifo
	case syscall.S_IFSOCK:
		return dtSock
	case syscall.S_IFCHR:
		return dtChr
	case syscall.S_IFBLK:
		return dtBlk
	}
	return dtUnknown
}
