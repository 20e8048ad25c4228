// Command cachebench measures mkbinarycache side by side with `nix copy
// --to file://` of the newest Nix and of the host's, the nixpkgs builder's
// method (nixpkgs_model.py) and the zstd floor (the pre-dumped NAR through
// `zstd -T<cores>`), all on the same closures in the same store, and prints
// one table (wall time, output bytes, peak RSS, the ratios) and which of
// the project's targets hold.
//
// The newest Nix runs chrooted into the Debian root file system that
// scripts/setup.sh prepares, in a private mount namespace, on the
// benchmark's own persistent store (-state DIR/sid-nix as /nix), so that
// the closures are built once and the host's store is never opened by a
// newer Nix. mkbinarycache (static), the nixpkgs method and the floor run
// there too; the host's Nix runs its own binaries on the same store, bound
// on /nix. What the benchmark installs in the root file system (python3,
// zstd, strace) goes into an overlay in the state directory.
//
// The closures are built from files every machine here has, imported with
// builtins.path and tied together by one busybox derivation; their
// structured-attrs JSON comes from a real derivation, as Nix hands it to a
// builder. Runs alternate between the tools, each writes a fresh output
// directory, and every output is checked (narinfo count, every NarHash
// against Nix's, one NAR decompressed and hashed) so a broken fast path
// cannot win.
//
//	go run ./builder/cmd/cachebench                        # the published cases, 3 runs each
//	go run ./builder/cmd/cachebench -cases many:zstd -runs 5 -profile /tmp/prof
//	go run ./builder/cmd/cachebench -quick                 # a tiny closure, 1 run
//	go run ./builder/cmd/cachebench -ci-cycle -cases big:zstd,many:zstd  # a CI job's save and restore
//	go run ./builder/cmd/cachebench -newer-rootfs DIR      # + nix copy of a newer Nix in DIR/opt
//
// It needs root, Nix, busybox-static and the root file system with the
// newest Nix (scripts/setup.sh).
package main

import (
	"context"
	"errors"
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
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The subcommands the benchmark runs inside the chroot.
	if len(args) >= 3 && args[2] == "--" {
		switch args[0] {
		case "timeit":
			return timeit(args[1], args[3:])
		case "profile":
			return profileRun(ctx, args[1], args[3:])
		}
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	b, err := newBench(cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.ciCycle {
		res, err := b.ciCycle(ctx)
		if err != nil {
			return err
		}
		printCICycle(stdout, b, res)
		return nil
	}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	printTable(stdout, b, res)
	return nil
}
