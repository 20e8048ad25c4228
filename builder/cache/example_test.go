package cache_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// Writing a cache of a closure: hello refers to greet. The closure usually
// comes from Nix (closure.ParsePathInfo, attrs.Read), with the NAR hashes
// it recorded; here the writer computes them.
func ExampleWriter() {
	tmp, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	store := filepath.Join(tmp, "store")
	greet := filepath.Join(store, "0fbgd045z0d4icpbc2yyz4gx48ak44la-greet")
	hello := filepath.Join(store, "1fbgd045z0d4icpbc2yyz4gx48ak44la-hello")
	os.MkdirAll(greet, 0o755)
	os.WriteFile(filepath.Join(greet, "greeting"), []byte("hi\n"), 0o644)
	os.MkdirAll(filepath.Join(hello, "bin"), 0o755)
	os.WriteFile(filepath.Join(hello, "bin", "hello"), []byte("#!/bin/sh\necho hello\n"), 0o755)
	c := closure.Closure{
		{StorePath: greet},
		{StorePath: hello, References: []string{greet}},
	}

	// Only the store directory is required: every other field's zero value
	// is its default (zstd at its default level, a path and an encoder
	// thread per CPU, no fsync, ...).
	w, err := cache.NewWriter(filepath.Join(tmp, "cache"), cache.Options{StoreDir: store})
	if err != nil {
		log.Fatal(err)
	}
	stats, err := w.Write(context.Background(), c, func(e cache.Event) {
		if e.Kind == cache.Written {
			// A narinfo is published after those of its references.
			fmt.Printf("%s: NAR of %d bytes\n", filepath.Base(e.Path), e.NarBytes)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	nars, _ := filepath.Glob(filepath.Join(tmp, "cache", "nar", "*"+cache.DefaultCompression.Ext()))
	fmt.Println(stats.Paths, "paths,", len(nars), cache.DefaultCompression, "NARs")
	// Output:
	// 0fbgd045z0d4icpbc2yyz4gx48ak44la-greet: NAR of 288 bytes
	// 1fbgd045z0d4icpbc2yyz4gx48ak44la-hello: NAR of 504 bytes
	// 2 paths, 2 zstd NARs
}
