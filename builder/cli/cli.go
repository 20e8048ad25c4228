// Package cli is the mkbinarycache command line: as a derivation builder
// (no arguments, structured attrs), and outside Nix. It parses arguments,
// calls the packages that do the work and renders what they report.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/nixquery"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Version is what --version prints; the command's main package sets it
// from its own version variable, which packaged builds set at link time.
var Version = "0.1.0-dev"

// Env is the process environment the command sees.
type Env struct {
	Getenv         func(string) string
	Stdout, Stderr io.Writer
}

// Main runs the command with args (without the program name).
func Main(ctx context.Context, args []string, env Env) int {
	err := run(ctx, args, env)
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "mkbinarycache: %v\nTry 'mkbinarycache --help'.\n", err)
		return ExitUsage
	default:
		fmt.Fprintf(env.Stderr, "mkbinarycache: error: %v\n", err)
		return ExitFailure
	}
}

type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// commands are the subcommands, by their first argument.
var commands = map[string]func(context.Context, []string, Env) error{
	"sign":   runSign,
	"verify": runVerify,
	"keygen": runKeygen,
	"hook":   runHook,
	"gc":     runGC,
	"copy":   runCopy,
	"push":   runPush,
}

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return runInDerivation(ctx, env)
	}
	if cmd, ok := commands[args[0]]; ok {
		return cmd(ctx, args[1:], env)
	}
	return runBuild(ctx, args, env)
}

// storeDir is the store directory --store-dir gives, else $NIX_STORE's,
// else the default.
func storeDir(flag string, env Env) string {
	for _, d := range []string{flag, env.Getenv("NIX_STORE")} {
		if d != "" {
			return strings.TrimRight(d, "/")
		}
	}
	return cachedir.DefaultStoreDir
}

// nix is the local Nix of storeDir, found through the command's environment.
func nix(env Env, storeDir string) nixquery.Nix {
	return nixquery.Nix{StoreDir: storeDir, Getenv: env.Getenv}
}
