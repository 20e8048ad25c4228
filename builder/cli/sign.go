package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

const signUsage = `Usage: mkbinarycache sign --key-file FILE [--store-dir DIR] [--replace-invalid] [--jobs N] [--quiet] CACHE-DIR

Adds a signature (a Sig: line) by the secret key in FILE to every narinfo of
the cache, in place. Narinfos that already carry a valid signature by that
key are left alone, so running it again is harmless; other signatures are
kept. Each narinfo is replaced atomically.

A narinfo is signed only once checked: its NAR must hash and decompress to
what it says, and a path valid in the local Nix store must have the store's
NAR hash, size and references. A path the local store lacks is vouched for
only as far as the cache itself: a warning says how many there were. A
signature by the key's name that does not verify is kept, and its narinfo
refused, unless --replace-invalid.

Sign a writable copy of the cache, never inside a derivation: a secret key
given to a build would be copied into the world-readable Nix store.
  cp -r --no-preserve=mode result/ /tmp/cache
  mkbinarycache sign --key-file /etc/nix/cache.sec /tmp/cache

Options:
`

func runSign(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache sign", signUsage, env)
	keyFile := fs.String("key-file", "", "the secret key `FILE` (from mkbinarycache keygen or nix-store --generate-binary-cache-key)")
	cacheStore := fs.String("store-dir", "", "the store `DIR` the cache is for (default: its nix-cache-info's StoreDir)")
	var jobs int
	countVar(fs, &jobs, "jobs", 0, "narinfos signed at once (`N`, default: the number of CPUs)")
	replaceInvalid := fs.Bool("replace-invalid", false, "replace a signature by the key's name that does not verify (default: refuse its narinfo)")
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
	m := newMeter(env.Stderr, "narinfos", *quiet)
	o := sign.DirOptions{Dir: pos[0], StoreDir: *cacheStore, Jobs: jobs, Durable: true,
		Local: nix(env, storeDir("", env)).ValidPathInfo, ReplaceInvalid: *replaceInvalid,
		Warn: func(msg string) { m.warn(pos[0], msg) }}
	keyName := sign.KeyName(key)
	stats, err := sign.SignDir(ctx, key, o, func(file string, out sign.Outcome, err error) {
		m.done("")
		if out == sign.Replaced && err == nil && !*quiet {
			m.notice("%s: replaced an invalid signature by %s", file, keyName)
		}
	})
	if stats.CacheOnly > 0 && !*quiet {
		m.notice("warning: %d narinfos signed for paths the local store does not have: their NARs match them, but the content is vouched for only as far as the cache itself", stats.CacheOnly)
	}
	if errors.Is(err, sign.ErrInvalidSignature) {
		m.notice("a signature by %s that does not verify was kept; --replace-invalid replaces it if this key is the one that made it", keyName)
	}
	m.finish(fmt.Sprintf("%d narinfos: %d signed, %d re-signed, %d already signed by %s, %d failed",
		stats.Files, stats.Added, stats.Replaced, stats.Present, keyName, stats.Failed))
	return err
}
