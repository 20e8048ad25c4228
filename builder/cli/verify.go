package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

const verifyUsage = `Usage: mkbinarycache verify [--public-key KEY]... [--upstream URL]... [--jobs N] [--store-dir DIR] [--quiet] CACHE-DIR

Checks a binary cache (written by mkbinarycache, nix copy or others): every
narinfo parses, its NAR exists with the recorded FileSize and FileHash,
decompresses to NarSize bytes with the NarHash and is a well-formed NAR,
every reference has a narinfo (or, with --upstream, is served there),
.ls listings match their NARs, debuginfo entries point to NARs of the
cache, and, with --public-key, every narinfo has a valid signature by one
of the keys. Prints one line per problem,
"FILE: problem", and exits 1 if there is any.

Options:
`

func runVerify(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache verify", verifyUsage, env)
	var keys stringsFlag
	fs.Var(&keys, "public-key", "require a valid signature by one of the given keys: `KEY` as in trusted-public-keys (name:base64), a file holding one, or several separated by spaces; repeatable")
	storeDir := fs.String("store-dir", "", "the store `DIR` the cache is for (default: its nix-cache-info's StoreDir)")
	var jobs int
	countVar(fs, &jobs, "jobs", 0, "narinfos checked at once (`N`, default: the number of CPUs)")
	quiet := fs.Bool("quiet", false, "print only the problems")
	var up upstreamFlags
	up.register(fs, "references without a narinfo here are asked there")
	lockWait := fs.Duration("lock-wait", 0, "how long to wait for a gc holding the cache (`DURATION`; default: as long as it takes)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("verify: give exactly one cache directory")
	}
	o := verify.Options{Dir: pos[0], StoreDir: *storeDir, Jobs: jobs, LockWait: *lockWait}
	for _, k := range keys {
		for _, f := range strings.Fields(k) {
			pk, err := sign.ParsePublicKey(f)
			if err != nil {
				return usageError{err}
			}
			o.PublicKeys = append(o.PublicKeys, pk)
		}
	}
	if len(keys) > 0 && len(o.PublicKeys) == 0 {
		return usagef("verify: --public-key is empty")
	}
	upStore := *storeDir
	if len(up.urls) > 0 {
		if upStore, err = cachedir.ResolveStoreDir(o.Dir, *storeDir); err != nil {
			return err
		}
	}
	m := newMeter(env.Stderr, "problems", *quiet)
	if o.Served, err = up.served(ctx, env, upStore, m, "verify", "taken as not served"); err != nil {
		return err
	}
	// The problems are verify's result: on stdout, one a line.
	stats, err := verify.Cache(ctx, o, func(p verify.Problem) {
		m.result(env.Stdout, p.String())
	})
	if err != nil {
		m.finish("")
		return err
	}
	found := "no problems"
	if stats.Problems > 0 {
		found = fmt.Sprintf("%d problems in %d files", stats.Problems, stats.Bad)
	}
	m.finish(fmt.Sprintf("%d narinfos, NAR %s (%s compressed) checked%s: %s",
		stats.NarInfos, humanBytes(stats.NarBytes), humanBytes(stats.FileBytes), keyNames(o.PublicKeys), found))
	if stats.Problems > 0 {
		return fmt.Errorf("verify %s: %d problems", o.Dir, stats.Problems)
	}
	return nil
}

func keyNames(keys []signature.PublicKey) string {
	if len(keys) == 0 {
		return ""
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return ", signatures by " + strings.Join(names, " or ")
}
