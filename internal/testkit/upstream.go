package testkit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/upstream"
)

// SignedBy returns o with every narinfo signed by TestSecret, as an
// upstream such as cache.nixos.org signs its own.
func SignedBy(t testing.TB, o cache.Options) cache.Options {
	t.Helper()
	key, err := signature.LoadSecretKey(TestSecret)
	Must(t, err)
	o.Sign = func(ni *narinfo.NarInfo) error {
		s, err := sign.Sign(ni, key, o.StoreDir)
		if err == nil {
			ni.Signatures = append(ni.Signatures, s)
		}
		return err
	}
	return o
}

// WriteUpstream writes c into dir as a signed upstream cache.
func WriteUpstream(t testing.TB, dir string, c closure.Closure, o cache.Options) {
	t.Helper()
	WriteCache(t, dir, c, SignedBy(t, o))
}

// Served asks the upstream caches (URLs), trusting TestPublic, what they
// serve of the cache at dir's store; nil without upstreams. A warning
// fails t: the tests' upstreams always answer.
func Served(t testing.TB, dir string, upstreams ...string) func(context.Context, []string) (map[string]bool, error) {
	t.Helper()
	if len(upstreams) == 0 {
		return nil
	}
	storeDir, err := cachedir.ResolveStoreDir(dir, "")
	Must(t, err)
	key, err := signature.ParsePublicKey(TestPublic)
	Must(t, err)
	c, err := upstream.New(upstream.Options{URLs: upstreams, Keys: []signature.PublicKey{key}, StoreDir: storeDir})
	Must(t, err)
	return func(ctx context.Context, paths []string) (map[string]bool, error) {
		return c.Served(ctx, paths, func(w upstream.Warning) { t.Errorf("upstream: %s", w) })
	}
}

// Server is a real HTTP server on loopback serving a directory, counting
// the requests for narinfos and for everything.
type Server struct {
	URL string
	mu  sync.Mutex
	// NarInfos and All count requests; Paths lists the narinfo requests.
	narInfos, all int
	goNarInfos    int // narinfo requests from Go's client: mkbinarycache's, not Nix's
	// Status, if set, answers a request instead of the file (0: serve).
	Status func(r *http.Request) int
}

// Serve serves dir on loopback until the test ends.
func Serve(t testing.TB, dir string) *Server {
	t.Helper()
	s := &Server{}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.all++
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			s.narInfos++
			if strings.HasPrefix(r.UserAgent(), "Go-http-client/") {
				s.goNarInfos++
			}
		}
		status := s.Status
		s.mu.Unlock()
		if status != nil {
			if code := status(r); code != 0 {
				w.WriteHeader(code)
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Requests returns the narinfo requests and all requests so far.
func (s *Server) Requests() (narInfos, all int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.narInfos, s.all
}

// OurNarInfos returns the narinfo requests mkbinarycache made (Go's
// client), apart from Nix's own.
func (s *Server) OurNarInfos() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.goNarInfos
}

// SetStatus sets Status safely while the server runs.
func (s *Server) SetStatus(f func(r *http.Request) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Status = f
}
