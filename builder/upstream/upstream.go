// Package upstream answers, for many store paths at once, whether an
// upstream binary cache (http://, https:// or file://, such as
// cache.nixos.org) serves them: its narinfo parses under the same rules as
// a cache's own, names the path asked about, and carries a signature by a
// trusted key (or a content address that proves the path, which Nix accepts
// unsigned). A CI cache then stores only what its upstreams lack.
//
// Every doubt means "not served": a 404, a timeout, a 429 or 5xx, a bad
// narinfo. Only a 404 (or a missing file) is a plain answer; the rest are
// reported as warnings, and an upstream that fails that way is not asked
// again during the run, so a dead upstream costs one timeout, not one per
// path. Positive answers may be remembered on disk (Options.MemoryDir) for
// Options.TTL.
package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

// Defaults of Options.
const (
	// DefaultJobs bounds the requests in flight, over all upstreams.
	DefaultJobs = 16
	// DefaultConnectTimeout and DefaultTimeout bound one request: a hook
	// runs while the build waits for it.
	DefaultConnectTimeout = 2 * time.Second
	DefaultTimeout        = 5 * time.Second
	// DefaultTTL is how long a positive answer is remembered: a day, so a
	// path an upstream has since dropped is stored again within a day.
	DefaultTTL = 24 * time.Hour
	// maxNarInfo bounds what is read of one narinfo.
	maxNarInfo = 1 << 20
)

// Options say which upstreams to ask and whom to trust.
type Options struct {
	URLs []string // http://, https:// or file:// caches
	// Keys are the trusted public keys; a narinfo counts only with a valid
	// signature by one of them, unless Unsigned.
	Keys     []signature.PublicKey
	Unsigned bool
	StoreDir string // the store the paths are in; "" for /nix/store
	Jobs     int    // requests at once; 0 for DefaultJobs
	// ConnectTimeout and Timeout bound each request; 0 for the defaults.
	ConnectTimeout, Timeout time.Duration
	// CAFile holds the certificates https upstreams are checked against;
	// "" for the system's (CAFileFromEnv finds it as Nix does).
	CAFile string
	// Netrc is a netrc file whose credentials go to the hosts it names, as
	// Nix's netrc-file; "" or a missing file for none.
	Netrc string
	// MemoryDir, if not "", is where positive answers are remembered for
	// TTL (0: DefaultTTL). It must not be inside a cache directory, which
	// others may write: MemoryDirFromEnv gives the user's cache directory.
	MemoryDir string
	TTL       time.Duration
}

// Client asks upstreams. It is safe for concurrent use.
type Client struct {
	o      Options
	ups    []*source
	http   *http.Client
	netrc  []netrcEntry
	memory string // MemoryDir/<digest of URLs, keys, Unsigned>
}

// source is one upstream and what the run learnt of it.
type source struct {
	name string // the URL without its password, for messages
	u    *url.URL
	mu   sync.Mutex
	down string // why it is no longer asked, after a failure
	info bool   // nix-cache-info checked
}

// New checks o and prepares the client; it makes no request.
func New(o Options) (*Client, error) {
	if o.StoreDir == "" {
		o.StoreDir = cachedir.DefaultStoreDir
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if len(o.Keys) == 0 && !o.Unsigned {
		return nil, errors.New("upstream: no trusted public key (give one, or allow unsigned upstreams)")
	}
	c := &Client{o: o}
	for _, raw := range o.URLs {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil {
			return nil, fmt.Errorf("upstream URL: %w", err)
		}
		switch {
		case u.Scheme == "file" && u.Host == "" && path.IsAbs(u.Path):
		case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		default:
			return nil, fmt.Errorf("upstream %s: not an http://, https:// or file:///ABSOLUTE/PATH URL", u.Redacted())
		}
		c.ups = append(c.ups, &source{name: u.Redacted(), u: u})
	}
	pool, err := certPool(o.CAFile)
	if err != nil {
		return nil, err
	}
	if o.Netrc != "" {
		if c.netrc, err = readNetrc(o.Netrc); err != nil {
			return nil, err
		}
	}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	c.http = &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: o.ConnectTimeout,
			MaxIdleConnsPerHost: o.Jobs,
			ForceAttemptHTTP2:   true,
			// No proxy from the environment: under nix-daemon it is empty
			// anyway, and a hook should behave the same in a shell.
		},
		// Redirects keep the method; credentials are not forwarded to
		// another host (Go drops Authorization across hosts).
	}
	if o.MemoryDir != "" {
		h := sha256.New()
		for _, u := range o.URLs {
			fmt.Fprintf(h, "url %s\n", strings.TrimRight(u, "/"))
		}
		keys := make([]string, len(o.Keys))
		for i, k := range o.Keys {
			keys[i] = k.String()
		}
		slices.Sort(keys)
		fmt.Fprintf(h, "keys %s\nunsigned %t\nstore %s\n", strings.Join(keys, " "), o.Unsigned, o.StoreDir)
		c.memory = filepath.Join(o.MemoryDir, hex.EncodeToString(h.Sum(nil))[:32])
	}
	return c, nil
}

// Warning is something that made an answer "not served" other than the
// upstream saying so: the caller stores the path and should say why.
type Warning struct {
	Upstream, Path, Msg string
}

func (w Warning) String() string {
	if w.Path == "" {
		return w.Upstream + ": " + w.Msg
	}
	return w.Upstream + ": " + w.Path + ": " + w.Msg
}

// Served returns which of paths (full store paths) some upstream serves.
// warn, if not nil, is called for each doubt, from one goroutine at a
// time. The error is only for a cancelled ctx: an upstream's failure is a
// warning and a "not served".
func (c *Client) Served(ctx context.Context, paths []string, warn func(Warning)) (map[string]bool, error) {
	served := map[string]bool{}
	if len(paths) == 0 || len(c.ups) == 0 {
		return served, nil
	}
	var mu sync.Mutex
	report := func(w Warning) {
		mu.Lock()
		defer mu.Unlock()
		if warn != nil {
			warn(w)
		}
	}
	var ask []string
	for _, p := range slices.Compact(slices.Sorted(slices.Values(paths))) {
		if c.remembered(p) {
			served[p] = true
		} else {
			ask = append(ask, p)
		}
	}
	pool.Each(ctx, c.o.Jobs, ask, func(p string) {
		for _, s := range c.ups {
			if c.serves(ctx, s, p, report) {
				mu.Lock()
				served[p] = true
				mu.Unlock()
				c.remember(p)
				return
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return served, nil
}

// serves asks s about p.
func (c *Client) serves(ctx context.Context, s *source, p string, report func(Warning)) bool {
	if !c.usable(ctx, s, report) {
		return false
	}
	name := narinfo.HashPart(p) + ".narinfo"
	data, found, err := c.get(ctx, s, name)
	if err != nil {
		c.fail(s, err, report)
		return false
	}
	if !found {
		return false
	}
	if msg := c.check(data, p); msg != "" {
		report(Warning{Upstream: s.name, Path: p, Msg: msg})
		return false
	}
	return true
}

// usable checks s's nix-cache-info once (its store must be ours, as Nix
// requires) and reports whether s is still asked.
func (c *Client) usable(ctx context.Context, s *source, report func(Warning)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != "" {
		return false
	}
	if s.info {
		return true
	}
	data, found, err := c.get(ctx, s, cachedir.InfoFile)
	switch {
	case err != nil:
		s.down = err.Error()
	case !found:
		s.down = "no " + cachedir.InfoFile + ": not a binary cache"
	default:
		if sd := cachedir.ParseInfo(data).StoreDir; sd != "" && sd != c.o.StoreDir {
			s.down = fmt.Sprintf("a cache for store %s, not %s", sd, c.o.StoreDir)
		}
	}
	if s.down != "" {
		report(Warning{Upstream: s.name, Msg: s.down + "; not asked again in this run, its paths are stored"})
		return false
	}
	s.info = true
	return true
}

func (c *Client) fail(s *source, err error, report func(Warning)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != "" {
		return
	}
	s.down = err.Error()
	report(Warning{Upstream: s.name, Msg: s.down + "; not asked again in this run, its paths are stored"})
}

// check parses an upstream narinfo for p strictly, and reports what makes
// it not count ("" if it counts).
func (c *Client) check(data []byte, p string) string {
	ni, _, err := narinfo.Parse(data)
	if err != nil {
		return "narinfo does not parse: " + err.Error()
	}
	switch {
	case ni.StorePath != p:
		return fmt.Sprintf("narinfo is for %q", ni.StorePath)
	case ni.URL == "" || ni.NarHash == nil || ni.NarSize == 0:
		return "narinfo lacks URL, NarHash or NarSize"
	}
	for _, r := range ni.References {
		if err := narinfo.CheckBaseName(r); err != nil {
			return fmt.Sprintf("narinfo reference %q: %v", r, err)
		}
	}
	if c.o.Unsigned {
		return ""
	}
	if ok, err := narinfo.ContentAddressed(ni, c.o.StoreDir); err == nil && ok {
		return ""
	}
	valid, err := sign.Valid(ni, c.o.Keys, c.o.StoreDir)
	if err != nil {
		return "narinfo: " + err.Error()
	}
	if len(valid) == 0 {
		return "not signed by a trusted key"
	}
	return ""
}

// errStatus is an HTTP answer that is neither the narinfo nor a 404.
type errStatus struct {
	url    string
	status string
}

func (e errStatus) Error() string { return e.url + ": " + e.status }

// get fetches name from s: its bytes, or found false for a 404 (a missing
// file); any other failure is an error.
func (c *Client) get(ctx context.Context, s *source, name string) ([]byte, bool, error) {
	if s.u.Scheme == "file" {
		f := filepath.Join(s.u.Path, name)
		data, err := readLimited(f)
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return data, err == nil, err
	}
	u := s.u.JoinPath(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, err
	}
	if login, password, ok := c.credentials(u.Hostname()); ok {
		req.SetBasicAuth(login, password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Without the URL's credentials, if any were in it.
		return nil, false, fmt.Errorf("GET %s: %w", redacted(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		// As Nix: S3 answers 403 for a missing key of a bucket one may
		// not list.
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, false, errStatus{redacted(u), resp.Status}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxNarInfo+1))
	if err != nil {
		return nil, false, fmt.Errorf("GET %s: %w", redacted(u), unwrapURLError(err))
	}
	if len(data) > maxNarInfo {
		return nil, false, fmt.Errorf("GET %s: more than %d bytes", redacted(u), maxNarInfo)
	}
	return data, true, nil
}

func redacted(u *url.URL) string { return u.Redacted() }

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return errors.New("timed out")
		}
		return ue.Err
	}
	return err
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxNarInfo+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxNarInfo {
		return nil, fmt.Errorf("%s: more than %d bytes", name, maxNarInfo)
	}
	return data, nil
}

// certPool returns the certificates of file, or the system's.
func certPool(file string) (*x509.CertPool, error) {
	if file == "" {
		p, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("upstream: system certificates: %w", err)
		}
		return p, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("upstream: certificates: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream: certificates: no PEM certificate in %s", file)
	}
	return p, nil
}

// nixProfileCerts is where a multi-user Nix install keeps its CA bundle,
// which its nix-daemon unit passes as NIX_SSL_CERT_FILE.
const nixProfileCerts = "/nix/var/nix/profiles/default/etc/ssl/certs/ca-bundle.crt"

// CAFileFromEnv finds the certificate file as Nix does: NIX_SSL_CERT_FILE,
// then SSL_CERT_FILE; else "" (the system store: Go reads the usual
// places, /etc/ssl/certs/ca-certificates.crt and others, which need no
// environment), or, where the system has none, the bundle of the Nix
// install's default profile.
func CAFileFromEnv(getenv func(string) string) string {
	for _, v := range []string{"NIX_SSL_CERT_FILE", "SSL_CERT_FILE"} {
		if f := getenv(v); f != "" {
			return f
		}
	}
	if p, err := x509.SystemCertPool(); err == nil && !p.Equal(x509.NewCertPool()) {
		return ""
	}
	if _, err := os.Stat(nixProfileCerts); err == nil {
		return nixProfileCerts
	}
	return ""
}

// MemoryDirFromEnv is where answers are remembered: $XDG_CACHE_HOME, else
// $HOME/.cache, under mkbinarycache/upstream; "" when neither is set (a
// hook under nix-daemon), and then nothing is remembered.
func MemoryDirFromEnv(getenv func(string) string) string {
	base := getenv("XDG_CACHE_HOME")
	if base == "" {
		if h := getenv("HOME"); h != "" && h != "/" && h != "/homeless-shelter" {
			base = filepath.Join(h, ".cache")
		}
	}
	if base == "" || !filepath.IsAbs(base) {
		return ""
	}
	return filepath.Join(base, "mkbinarycache", "upstream")
}

// remembered reports whether p was found served less than TTL ago.
func (c *Client) remembered(p string) bool {
	if c.memory == "" {
		return false
	}
	name := filepath.Join(c.memory, narinfo.HashPart(p))
	fi, err := os.Lstat(name)
	if err != nil {
		return false
	}
	if fi.Mode().IsRegular() && time.Since(fi.ModTime()) < c.o.TTL {
		return true
	}
	_ = os.Remove(name) // expired: asked again, and remembered anew if served
	return false
}

// remember notes that p is served; failures only cost a request later.
func (c *Client) remember(p string) {
	if c.memory == "" {
		return
	}
	if err := os.MkdirAll(c.memory, 0o700); err != nil {
		return
	}
	name := filepath.Join(c.memory, narinfo.HashPart(p))
	if err := os.WriteFile(name, nil, 0o600); err == nil {
		now := time.Now()
		_ = os.Chtimes(name, now, now)
	}
}
