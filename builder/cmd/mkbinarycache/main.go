// Command mkbinarycache writes a flat-file Nix binary cache of a closure. It
// is the builder of the mkBinaryCache derivation and a CLI; see --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
)

// version is set by the linker (-X main.version=...) in packaged builds.
var version string

func main() {
	if version != "" {
		cli.Version = version
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels the run, which stops cleanly; once it has,
	// a second one kills, should anything not heed the cancellation.
	go func() { <-ctx.Done(); stop() }()
	code := cli.Main(ctx, os.Args[1:], cli.Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
