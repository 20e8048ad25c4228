package compress_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
)

// A compressing writer for a narinfo's Compression, and its reader.
func ExampleNewWriter() {
	m, err := compress.Parse("xz")
	if err != nil {
		log.Fatal(err)
	}
	var file bytes.Buffer
	w, err := compress.NewWriter(&file, m, compress.Options{Threads: 2})
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(w, strings.NewReader(strings.Repeat("nix-archive-1 ", 1000)))
	if err := w.Close(); err != nil { // flushes; file is complete after it
		log.Fatal(err)
	}
	r, err := compress.NewReader(&file, m)
	if err != nil {
		log.Fatal(err)
	}
	nar, err := io.ReadAll(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes, nar/….nar%s\n", m, len(nar), m.Ext())
	// Output: xz: 14000 bytes, nar/….nar.xz
}
