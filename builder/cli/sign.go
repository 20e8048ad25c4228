package cli

import (
	"context"
	"fmt"

	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

const signUsage = `Usage: mkbinarycache sign --key-file FILE [--store-dir DIR] [--jobs N] [--quiet] CACHE-DIR

Adds a signature (a Sig: line) by the secret key in FILE to every narinfo of
the cache, in place. Narinfos that already carry a valid signature by that
key are left alone, so running it again is harmless; other signatures are
kept. Each narinfo is replaced atomically.

Sign a writable copy of the cache, never inside a derivation: a secret key
given to a build would be copied into the world-readable Nix store.
  cp -r --no-preserve=mode result/ /tmp/cache
  mkbinarycache sign --key-file /etc/nix/cache.sec /tmp/cache

Options:
`

func runSign(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache sign", signUsage, env)
	keyFile := fs.String("key-file", "", "the secret key `FILE` (from mkbinarycache keygen or nix-store --generate-binary-cache-key)")
	storeDir := fs.String("store-dir", "", "the store `DIR` the cache is for (default: its nix-cache-info's StoreDir)")
	var jobs int
	countVar(fs, &jobs, "jobs", 0, "narinfos signed at once (`N`, default: the number of CPUs)")
	quiet := fs.Bool("quiet", false, "print only errors")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("sign: give exactly one cache directory")
	}
	if *keyFile == "" {
		return usagef("sign: --key-file is required")
	}
	key, err := sign.LoadSecretKeyFile(*keyFile)
	if err != nil {
		return err
	}
	o := sign.DirOptions{Dir: pos[0], StoreDir: *storeDir, Jobs: jobs, LockWait: -1, Durable: true}
	keyName := sign.KeyName(key)
	m := newMeter(env.Stderr, "narinfos", *quiet)
	stats, err := sign.SignDir(ctx, key, o, func(file string, out sign.Outcome, err error) {
		m.done("")
		if out == sign.Replaced && err == nil && !*quiet {
			m.notice("%s: replaced an invalid signature by %s", file, keyName)
		}
	})
	m.finish(fmt.Sprintf("%d narinfos: %d signed, %d re-signed, %d already signed by %s, %d failed",
		stats.Files, stats.Added, stats.Replaced, stats.Present, keyName, stats.Failed))
	return err
}
