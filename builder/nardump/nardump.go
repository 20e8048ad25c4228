// Package nardump serialises a store path to the NAR format, byte-identical
// to `nix-store --dump`.
package nardump

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/nix-community/go-nix/pkg/nar"
)

// bufSize batches go-nix's many small writes (DESIGN.md §1) into writes a
// compressor and hasher handle efficiently.
const bufSize = 256 << 10

// writers are reused: a cache of many small paths would otherwise allocate
// and clear a buffer per path.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

// Dump writes the NAR serialisation of the file system object at path to w.
func Dump(w io.Writer, path string) error {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	if err := nar.DumpPath(bw, path); err != nil {
		return fmt.Errorf("dump %s: %w", path, explain(err))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	return nil
}

// explain turns go-nix's "unknown type for PATH" into an error that says what
// the file is and why it cannot be dumped, as nix-store --dump refuses it.
func explain(err error) error {
	p, ok := strings.CutPrefix(err.Error(), "unknown type for ")
	if !ok {
		return err
	}
	p = strings.TrimPrefix(p, "file ")
	kind := "a special file"
	if fi, lerr := os.Lstat(p); lerr == nil {
		switch m := fi.Mode(); {
		case m&fs.ModeNamedPipe != 0:
			kind = "a named pipe (FIFO)"
		case m&fs.ModeSocket != 0:
			kind = "a socket"
		case m&fs.ModeCharDevice != 0:
			kind = "a character device"
		case m&fs.ModeDevice != 0:
			kind = "a block device"
		}
	}
	return errors.New(p + ": " + kind + ": a NAR holds only regular files, directories and symlinks")
}
