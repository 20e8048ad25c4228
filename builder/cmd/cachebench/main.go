// Command cachebench measures mkbinarycache side by side with `nix copy`
// and the nixpkgs builder's method (../shared/bench/nixpkgs_ref.py) on the
// same closures (DESIGN.md §5), and prints one table: wall time (min and
// median), output bytes, peak RSS and the ratios to each anchor, plus the
// zstd floor (the pre-dumped NAR through `zstd -T0`).
//
// The closures are built from files every machine here has, imported with
// builtins.path and tied together by one busybox derivation; their
// structured-attrs JSON comes from a real derivation, as Nix hands it to a
// builder. Runs alternate between the tools, each writes a fresh output
// directory, and every output is checked (narinfo count, every NarHash
// against Nix's, one NAR decompressed and hashed) so a broken fast path
// cannot win.
//
//	go run ./builder/cmd/cachebench                       # BIG and MANY, zstd xz none, 3 runs
//	go run ./builder/cmd/cachebench -closures many -methods zstd -runs 5
//	go run ./builder/cmd/cachebench -quick                # a tiny closure, 1 run: seconds
//
// It needs root, Nix and busybox-static (DESIGN.md §3).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if err == flag.ErrHelp {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	b, err := newBench(cfg, stderr)
	if err != nil {
		return err
	}
	defer b.cleanup()
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	printTable(stdout, cfg, b, res)
	return nil
}
