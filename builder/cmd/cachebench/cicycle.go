package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// The CI cycle (-ci-cycle): what a hosted CI job saves and restores each
// run, side by side with cache-nix-action's method, on the bench closures
// with about half of each closure's paths served by a loopback upstream
// (standing in for cache.nixos.org, signed with a key the machines trust).
//
//   - ours: the cache directory the hook leaves with --upstream (only what
//     upstream lacks), collected by gc and packed with tar and zstd, as a
//     CI cache service packs it; restored into a fresh machine, which
//     substitutes the closure from it and from upstream (max-jobs 0).
//   - whole /nix (cache-nix-action): the machine's store collected to the
//     root (nix-collect-garbage with the root registered), /nix/store and
//     /nix/var/nix/db packed with tar and zstd; restored into a fresh
//     machine, where the root is then valid.
//
// It measures run 2 of a cycle (the first run, the cold one, leaves the
// state run 2 starts from): the saved bytes, the save time, and the time
// from the start of the restore until the closure is in the store.

// ciSample is one run 2 of one method.
type ciSample struct {
	saved         uint64
	save, restore time.Duration
}

type ciResult struct {
	closure     *builtClosure
	served      int    // paths upstream serves
	servedBytes uint64 // their NAR
	ours, whole []ciSample
}

// ciCycle runs the CI cycle on each closure of the cases.
func (b *bench) ciCycle(ctx context.Context) ([]ciResult, error) {
	l, err := lock(filepath.Dir(b.work))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	b.load[0] = loadavg()
	var out []ciResult
	for _, name := range slices.Sorted(maps.Keys(b.closures)) {
		r, err := b.ciClosure(ctx, b.closures[name])
		if err != nil {
			return nil, fmt.Errorf("CI cycle of %s: %w", name, err)
		}
		out = append(out, r)
	}
	b.load[1] = loadavg()
	return out, nil
}

func (b *bench) ciClosure(ctx context.Context, c *builtClosure) (ciResult, error) {
	dir := filepath.Join(b.work, c.name, "ci")
	if err := os.RemoveAll(dir); err != nil {
		return ciResult{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ciResult{}, err
	}
	q := nixtest.ShellQuote
	sec, pub := filepath.Join(dir, "key.sec"), filepath.Join(dir, "key.pub")
	up, cache, full := filepath.Join(dir, "upstream"), filepath.Join(dir, "cache"), filepath.Join(dir, "full")

	// Upstream serves every other imported path (the root is the
	// project's own); it is closed: imported paths have no references.
	paths := slices.Sorted(maps.Keys(c.paths))
	var served []string
	for i, p := range slices.DeleteFunc(paths, func(p string) bool { return p == c.root }) {
		if i%2 == 0 {
			served = append(served, p)
		}
	}
	if _, err := b.newest.output(ctx, fmt.Sprintf("%s keygen bench-1 --secret-key-file %s --public-key-file %s && %s --out %s --quiet %s && %s sign --quiet --key-file %s %s",
		q(b.ours), q(sec), q(pub), q(b.ours), q(up), q(served...), q(b.ours), q(sec), q(up))); err != nil {
		return ciResult{}, err
	}
	key, err := os.ReadFile(pub)
	if err != nil {
		return ciResult{}, err
	}
	upURL, stop, err := serveDir(up)
	if err != nil {
		return ciResult{}, err
	}
	defer stop()
	trust := fmt.Sprintf("--option trusted-public-keys %s --option max-jobs 0", q(strings.TrimSpace(string(key))))

	// Run 1, cold: the hook's cache with --upstream (the main command
	// stores the same closure), signed; and the full cache the whole-store
	// machine substitutes from, standing in for its build.
	if _, err := b.newest.output(ctx, fmt.Sprintf(`%[1]s --out %[2]s --quiet --upstream %[3]s --upstream-key %[4]s %[5]s
%[1]s sign --quiet --key-file %[6]s %[2]s
%[1]s --out %[7]s --quiet %[5]s && %[1]s sign --quiet --key-file %[6]s %[7]s`,
		q(b.ours), q(cache), q(upURL), q(strings.TrimSpace(string(key))), q(c.root), q(sec), q(full))); err != nil {
		return ciResult{}, err
	}
	whole, err := b.freshMachine(dir, "whole-build")
	if err != nil {
		return ciResult{}, err
	}
	if _, err := whole.output(ctx, fmt.Sprintf("nix-store --add-root /nix/var/nix/gcroots/ci-root -r %s --option substituters %s %s >/dev/null",
		q(c.root), q("file://"+full), trust)); err != nil {
		return ciResult{}, err
	}

	res := ciResult{closure: c, served: len(served)}
	for _, p := range served {
		res.servedBytes += c.paths[p].NarSize
	}
	archive := filepath.Join(dir, "archive.tar.zst")
	for r := range b.cfg.runs {
		var s ciSample
		// Ours: gc to the root, pack; a fresh machine unpacks and substitutes.
		t, err := b.newest.timed(ctx, b.self, filepath.Join(dir, "t"), nil, []string{"sh", "-ec", fmt.Sprintf(
			"%s gc --quiet --upstream %s --keep %s %s && tar -C %s -cf - . | zstd -q -T0 -f -o %s",
			q(b.ours), q(upURL), q(c.root), q(cache), q(cache), q(archive))})
		if err != nil {
			return res, err
		}
		s.save = t.Wall
		if s.saved, err = fileSize(archive); err != nil {
			return res, err
		}
		m, err := b.freshMachine(dir, "restore")
		if err != nil {
			return res, err
		}
		if t, err = m.timed(ctx, b.self, filepath.Join(dir, "t"), nil, []string{"sh", "-ec", fmt.Sprintf(
			"mkdir -p /tmp/ci && zstd -q -dc %s | tar -x -C /tmp/ci && nix-store -r %s --option substituters %s %s >/dev/null",
			q(archive), q(c.root), q("file:///tmp/ci "+upURL), trust)}); err != nil {
			return res, err
		}
		s.restore = t.Wall
		res.ours = append(res.ours, s)
		b.logf("CI cycle %-5s ours       run %d: saved %8.1f MB, save %6.2fs, restore to substituted %6.2fs (load %s)",
			c.name, r+1, float64(s.saved)/1e6, s.save.Seconds(), s.restore.Seconds(), loadavg())

		// cache-nix-action: collect the store to the root, pack /nix; a
		// fresh machine unpacks it.
		if t, err = whole.timed(ctx, b.self, filepath.Join(dir, "t"), nil, []string{"sh", "-ec", fmt.Sprintf(
			"nix-collect-garbage >/dev/null 2>&1 && tar -C / -cf - nix/store nix/var/nix/db | zstd -q -T0 -f -o %s", q(archive))}); err != nil {
			return res, err
		}
		s = ciSample{save: t.Wall}
		if s.saved, err = fileSize(archive); err != nil {
			return res, err
		}
		if m, err = b.freshMachine(dir, "restore"); err != nil {
			return res, err
		}
		if t, err = m.timed(ctx, b.self, filepath.Join(dir, "t"), nil, []string{"sh", "-ec", fmt.Sprintf(
			"zstd -q -dc %s | tar -x -C / && nix-store -r %s --option substituters '' %s >/dev/null",
			q(archive), q(c.root), trust)}); err != nil {
			return res, err
		}
		s.restore = t.Wall
		res.whole = append(res.whole, s)
		b.logf("CI cycle %-5s whole /nix run %d: saved %8.1f MB, save %6.2fs, restore to substituted %6.2fs (load %s)",
			c.name, r+1, float64(s.saved)/1e6, s.save.Seconds(), s.restore.Seconds(), loadavg())
	}
	for _, d := range []string{"whole-build", "restore"} {
		if err := removeMachine(filepath.Join(dir, d)); err != nil {
			return res, err
		}
	}
	return res, os.Remove(archive)
}

// freshMachine is the newest Nix on an empty store of its own (dir/name,
// emptied first): a fresh CI machine.
func (b *bench) freshMachine(dir, name string) (*env, error) {
	m := *b.newest
	m.nix = filepath.Join(dir, name)
	if err := removeMachine(m.nix); err != nil {
		return nil, err
	}
	for _, d := range []string{filepath.Join(m.nix, "store"), filepath.Join(m.nix, "var", "nix")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return &m, os.Chmod(m.nix, 0o755)
}

// removeMachine removes a machine's store: Nix makes its directories
// read-only.
func removeMachine(dir string) error {
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func fileSize(name string) (uint64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return uint64(fi.Size()), nil
}

// serveDir serves dir over HTTP on loopback, which the chrooted machines
// share (they have no network namespace of their own).
func serveDir(dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// printCICycle writes the CI-cycle table.
func printCICycle(w io.Writer, b *bench, res []ciResult) {
	fmt.Fprintf(w, "Machine: %s\n", machine(b))
	fmt.Fprintf(w, "Load average (1, 5, 15 min): %s at the start, %s at the end\n\n", b.load[0], b.load[1])
	fmt.Fprintf(w, "CI cycle, run 2, Nix %s, minimum of %d runs; upstream: a loopback HTTP server\n\n", b.newest.name, b.cfg.runs)
	fmt.Fprintln(w, "| closure | served upstream | method | saved | save | restore until substituted |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range res {
		for _, m := range []struct {
			name string
			ss   []ciSample
		}{{"mkbinarycache --upstream, gc, tar+zstd of the cache", r.ours}, {"cache-nix-action: gc, tar+zstd of /nix", r.whole}} {
			s := ciMin(m.ss)
			fmt.Fprintf(w, "| %s (%d paths, NAR %.0f MB) | %d paths, NAR %.0f MB | %s | %s | %.2f s | %.2f s |\n",
				strings.ToUpper(r.closure.name), len(r.closure.paths), float64(r.closure.narBytes)/1e6, r.served,
				float64(r.servedBytes)/1e6, m.name, mb(s.saved), s.save.Seconds(), s.restore.Seconds())
		}
	}
	fmt.Fprintln(w, "\nsaved: the archive a CI cache service would store. restore: unpacking it on a fresh machine")
	fmt.Fprintln(w, "until the closure is in its store (ours: substituted from the unpacked cache and, for the")
	fmt.Fprintln(w, "served paths, from upstream over loopback, which is faster than cache.nixos.org would be).")
}

// ciMin takes the least of each measure.
func ciMin(ss []ciSample) ciSample {
	if len(ss) == 0 {
		return ciSample{}
	}
	m := ss[0]
	for _, s := range ss[1:] {
		m.saved = min(m.saved, s.saved)
		m.save = min(m.save, s.save)
		m.restore = min(m.restore, s.restore)
	}
	return m
}
