// Package nixquery asks the local Nix for what the command line needs: the
// closure of store paths with their NAR hashes, the build closure of
// derivations, a derivation's outputs and its build log. It runs Nix's
// programs and parses their output; it renders nothing.
//
// Every path it hands to Nix is first checked to be a store path of the
// store directory: Nix takes anything else for an installable, and would
// evaluate a flake it finds in a parent directory.
package nixquery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// Nix runs the Nix programs of one store.
type Nix struct {
	// StoreDir is the store directory (e.g. /nix/store); every path asked
	// about must be directly in it.
	StoreDir string
	// Getenv reads the environment the programs are found with
	// (NIX_BIN_DIR, PATH); nil means none is set.
	Getenv func(string) string
}

func (n Nix) getenv(k string) string {
	if n.Getenv == nil {
		return ""
	}
	return n.Getenv(k)
}

// checkPaths refuses anything that is not a store path, before Nix sees it.
func (n Nix) checkPaths(paths []string) error {
	v := closure.Validator{StoreDir: n.StoreDir}
	for _, p := range paths {
		if err := v.CheckPath(p); err != nil {
			return err
		}
	}
	return nil
}

// output runs a Nix program on store paths (after "--") and returns its
// standard output; the error carries the command and what Nix said.
func (n Nix) output(ctx context.Context, name string, args, paths []string) (string, error) {
	if err := n.checkPaths(paths); err != nil {
		return "", err
	}
	args = append(append(args, "--"), paths...)
	cmd := exec.CommandContext(ctx, n.Tool(name), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// splitDrvs separates derivations from other store paths.
func splitDrvs(paths []string) (drvs, others []string) {
	for _, p := range paths {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		} else {
			others = append(others, p)
		}
	}
	return drvs, others
}

// BuildClosure returns the derivations of paths (a .drv stays itself) with
// their closures and valid outputs, and paths: what a machine needs to
// rebuild paths from a cache, or to run nix log or nix-store --query
// --deriver on them.
func (n Nix) BuildClosure(ctx context.Context, paths []string) ([]string, error) {
	drvs, outs := splitDrvs(paths)
	if len(outs) > 0 {
		// One process for all: each costs about 0.1 s to start.
		out, err := n.output(ctx, "nix-store", []string{"--query", "--deriver"}, outs)
		if err != nil {
			return nil, err
		}
		derivers := strings.Fields(out)
		if len(derivers) != len(outs) {
			return nil, fmt.Errorf("nix-store --query --deriver gave %d lines for %d paths", len(derivers), len(outs))
		}
		for i, drv := range derivers {
			if drv == "unknown-deriver" {
				return nil, fmt.Errorf("%s has no known deriver", outs[i])
			}
			if _, err := os.Stat(drv); err != nil {
				return nil, fmt.Errorf("the deriver of %s: %w", outs[i], err)
			}
			drvs = append(drvs, drv)
		}
	}
	out, err := n.output(ctx, "nix-store", []string{"--query", "--requisites", "--include-outputs"}, drvs)
	if err != nil {
		return nil, err
	}
	return append(strings.Fields(out), paths...), nil
}

// PathInfo returns the closure of paths with NAR hashes, sizes and
// derivers. The new CLI takes a .drv for its outputs unless told
// --derivation, so derivations get a call of their own.
func (n Nix) PathInfo(ctx context.Context, paths []string) (closure.Closure, error) {
	drvs, others := splitDrvs(paths)
	var cs []closure.Closure
	for _, group := range []struct {
		paths []string
		flags []string
	}{{others, nil}, {drvs, []string{"--derivation"}}} {
		if len(group.paths) == 0 {
			continue
		}
		run := func(format ...string) (string, error) {
			args := append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, format...)
			args = append(append(args, "--recursive"), group.flags...)
			return n.output(ctx, "nix", args, group.paths)
		}
		// Nix 2.34 deprecates --json without --json-format, which Nix
		// 2.8 and 2.26 do not know: try the new form first.
		out, err := run("--json-format", "1")
		if err != nil && strings.Contains(err.Error(), "unrecognised flag '--json-format'") {
			out, err = run()
		}
		if err != nil {
			return nil, err
		}
		c, err := closure.ParsePathInfo([]byte(out), closure.Validator{StoreDir: n.StoreDir}, "nix path-info")
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return closure.Merge(cs...)
}

// DrvOutputs returns the output paths of a derivation, read from the .drv
// file; Nix is asked only when the file does not name them all (floating
// content-addressed outputs).
func (n Nix) DrvOutputs(ctx context.Context, drv string) ([]string, error) {
	if err := n.checkPaths([]string{drv}); err != nil {
		return nil, err
	}
	data, err := cachedir.ReadRegular(drv)
	if err == nil {
		if outs, err := parseDrvOutputs(string(data)); err == nil {
			return outs, nil
		}
	}
	out, err := n.output(ctx, "nix-store", []string{"--query", "--outputs"}, []string{drv})
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// BuildLog returns the log Nix kept of building the derivation drv
// (nix-store --read-log, which every Nix version has; nix log needs the
// nix-command feature). A derivation built elsewhere, or with build logs
// off, has none: that is an error naming drv.
func (n Nix) BuildLog(ctx context.Context, drv string) ([]byte, error) {
	out, err := n.output(ctx, "nix-store", []string{"--read-log"}, []string{drv})
	if err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// argBatch bounds the store paths of one Nix command line, well under the
// kernel's limit on arguments.
const argBatch = 1000

// ValidPathInfo returns what the store records of those of paths that are
// valid in it (PathInfo: their closures come along); paths of another
// store directory are not valid in this one. Validity is asked of
// nix-store --check-validity, which neither substitutes nor builds. With
// no Nix installed, no path is valid.
func (n Nix) ValidPathInfo(ctx context.Context, paths []string) (closure.Closure, error) {
	v := closure.Validator{StoreDir: n.StoreDir}
	var mine []string
	for _, p := range paths {
		if v.CheckPath(p) == nil {
			mine = append(mine, p)
		}
	}
	var valid []string
	for len(mine) > 0 {
		batch := mine[:min(len(mine), argBatch)]
		mine = mine[len(batch):]
		out, err := n.output(ctx, "nix-store", []string{"--check-validity", "--print-invalid"}, batch)
		if errors.Is(err, exec.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		invalid := map[string]bool{}
		for _, p := range strings.Fields(out) {
			invalid[p] = true
		}
		for _, p := range batch {
			if !invalid[p] {
				valid = append(valid, p)
			}
		}
	}
	var cs []closure.Closure
	for len(valid) > 0 {
		batch := valid[:min(len(valid), argBatch)]
		valid = valid[len(batch):]
		c, err := n.PathInfo(ctx, batch)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return closure.Merge(cs...)
}
