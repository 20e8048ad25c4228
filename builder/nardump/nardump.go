// Package nardump serialises a store path to the NAR format, byte-identical
// to `nix-store --dump`.
package nardump

import (
	"bufio"
	"fmt"
	"io"

	"github.com/nix-community/go-nix/pkg/nar"
)

// bufSize batches go-nix's many small writes (DESIGN.md §1) into writes a
// compressor and hasher handle efficiently.
const bufSize = 256 << 10

// Dump writes the NAR serialisation of the file system object at path to w.
func Dump(w io.Writer, path string) error {
	bw := bufio.NewWriterSize(w, bufSize)
	if err := nar.DumpPath(bw, path); err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	return nil
}
