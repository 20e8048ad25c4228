package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/upstream"
)

// upstreamFlags are --upstream, --upstream-key and --upstream-unsigned,
// which every command that stores paths or checks closure takes.
type upstreamFlags struct {
	urls, keys stringsFlag
	unsigned   bool
}

func (u *upstreamFlags) register(fs *flag.FlagSet, what string) {
	fs.Var(&u.urls, "upstream", "an upstream cache `URL` (http://, https://, file://; repeatable): "+what)
	fs.Var(&u.keys, "upstream-key", "trust upstream narinfos signed by `KEY` (name:base64 or a file; repeatable; default: Nix's trusted-public-keys)")
	fs.BoolVar(&u.unsigned, "upstream-unsigned", false, "count unsigned upstream narinfos as served too")
}

// upstreamUsage is what the commands' help says about upstreams.
const upstreamUsage = `With --upstream, the cache holds only what the upstreams (cache.nixos.org,
say) lack: a path counts as served when its upstream narinfo parses, names
it and is signed by a trusted key. Only paths not in the cache are asked
about, up to 16 at once, with a 2 s connect and 5 s total timeout; an
upstream that times out or answers anything but the narinfo or 404 is
warned about and not asked again in the run: its paths are stored.
Positive answers are remembered for a day in $XDG_CACHE_HOME (or
~/.cache)/mkbinarycache/upstream, never in the cache. https is checked
against NIX_SSL_CERT_FILE, SSL_CERT_FILE or the system's certificates;
credentials come from Nix's netrc-file.
`

// client returns the upstream client, or nil without --upstream. Keys
// and the netrc file default to Nix's configuration (nix show-config).
func (u *upstreamFlags) client(ctx context.Context, env Env, storeDir string) (*upstream.Client, error) {
	if len(u.urls) == 0 {
		if len(u.keys) > 0 || u.unsigned {
			return nil, usagef("--upstream-key and --upstream-unsigned need --upstream")
		}
		return nil, nil
	}
	o := upstream.Options{URLs: u.urls, Unsigned: u.unsigned, StoreDir: storeDir,
		CAFile: upstream.CAFileFromEnv(env.Getenv), MemoryDir: upstream.MemoryDirFromEnv(env.Getenv)}
	keys := []string(u.keys)
	// Nix's netrc-file always, and its keys unless given: without Nix
	// (copy or verify elsewhere), --upstream-key suffices.
	conf, err := nix(env, storeDir).Config(ctx)
	if err != nil && len(keys) == 0 && !u.unsigned {
		return nil, fmt.Errorf("--upstream without --upstream-key: Nix's trusted-public-keys: %w", err)
	}
	if len(keys) == 0 {
		keys = conf.TrustedPublicKeys
	}
	o.Netrc = conf.NetrcFile
	for _, k := range keys {
		for _, f := range strings.Fields(k) {
			pk, err := sign.ParsePublicKey(f)
			if err != nil {
				return nil, usageError{fmt.Errorf("--upstream-key: %w", err)}
			}
			o.Keys = append(o.Keys, pk)
		}
	}
	c, err := upstream.New(o)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// servedFunc is the question copy, verify and push ask upstream.
type servedFunc = func(context.Context, []string) (map[string]bool, error)

// served returns the client's Served with warnings printed to w as cmd's,
// or nil without --upstream.
func (u *upstreamFlags) served(ctx context.Context, env Env, storeDir string, w io.Writer, cmd, then string) (servedFunc, error) {
	client, err := u.client(ctx, env, storeDir)
	if client == nil || err != nil {
		return nil, err
	}
	return func(ctx context.Context, paths []string) (map[string]bool, error) {
		return client.Served(ctx, paths, warner(w, cmd, then))
	}, nil
}

// warner prints an upstream's warnings as the command's, with what
// follows for the paths concerned.
func warner(w io.Writer, cmd, then string) func(upstream.Warning) {
	prefix := "mkbinarycache"
	if cmd != "" {
		prefix += " " + cmd
	}
	return func(u upstream.Warning) {
		fmt.Fprintf(w, "%s: warning: upstream %s (%s)\n", prefix, u, then)
	}
}

// missingHere returns the paths of c whose narinfo the cache at dir lacks.
func missingHere(dir string, c closure.Closure) []string {
	var out []string
	for _, p := range c {
		if !hasNarInfo(dir, p.StorePath) {
			out = append(out, p.StorePath)
		}
	}
	return out
}

// hasNarInfo reports whether the cache at dir has a narinfo of
// storePath; an invalid entry in its place counts as none (the writer
// then names it).
func hasNarInfo(dir, storePath string) bool {
	has, _ := hasFiles(dir, []string{cachedir.NarInfoName(storePath)})
	return has
}

// withoutServed asks the upstream about the paths of c the cache at dir
// lacks, and returns c without those it serves, and them.
func withoutServed(ctx context.Context, up *upstream.Client, dir string, c closure.Closure, warn func(upstream.Warning)) (closure.Closure, map[string]bool, error) {
	if up == nil {
		return c, nil, nil
	}
	served, err := up.Served(ctx, missingHere(dir, c), warn)
	if err != nil {
		return nil, nil, err
	}
	var out closure.Closure
	for _, p := range c {
		if !served[p.StorePath] {
			out = append(out, p)
		}
	}
	return out, served, nil
}
