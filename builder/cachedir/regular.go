package cachedir

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// OpenRegular opens a file outside any cache (a .drv of the store, say)
// for reading, refusing anything but a regular file: os.Open blocks
// forever on a FIFO with no writer (and a signal cannot end the wait).
// O_NONBLOCK makes the open of a FIFO return at once; it changes nothing
// for a regular file. Files of a cache go through Dir.Open.
func OpenRegular(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	return onlyRegular(f, func(m fs.FileMode) error {
		return &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("not a regular file but %s", DescribeMode(m))}
	})
}

// onlyRegular returns f if it is a regular file, else closes it and
// returns notRegular's error for its mode.
func onlyRegular(f *os.File, notRegular func(fs.FileMode) error) (*os.File, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(fi.Mode())
	}
	return f, nil
}

// ReadRegular is os.ReadFile through OpenRegular.
func ReadRegular(name string) ([]byte, error) {
	f, err := OpenRegular(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// DescribeMode names the kind of file a mode is, for errors about files
// that are not regular.
func DescribeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file (" + m.String() + ")"
}
