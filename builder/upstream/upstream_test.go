package upstream_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/upstream"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// fixture is a store of four paths, of which an upstream serves two
// (signed by testkit's key) and one more unsigned.
type fixture struct {
	s                           *testkit.Store
	glibc, gcc, app, unsignedOK string
	dir                         string // the signed upstream
	unsignedDir                 string
}

func newFixture(t *testing.T) *fixture {
	s := testkit.NewStore(t)
	c := s.Add(t,
		testkit.Path{Name: "glibc", Files: map[string]string{"lib/libc.so": "libc"}},
		testkit.Path{Name: "gcc", Files: map[string]string{"bin/gcc": "gcc"}, Refs: []string{"glibc"}},
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app"}, Refs: []string{"glibc", "gcc"}},
		testkit.Path{Name: "extra", Files: map[string]string{"x": "x"}},
	)
	f := &fixture{s: s, glibc: c[0].StorePath, gcc: c[1].StorePath, app: c[2].StorePath, unsignedOK: c[3].StorePath,
		dir: filepath.Join(t.TempDir(), "up"), unsignedDir: filepath.Join(t.TempDir(), "unsigned")}
	testkit.WriteUpstream(t, f.dir, c[:2], s.Options(compress.Zstd))
	testkit.WriteCache(t, f.unsignedDir, c[3:], s.Options(compress.Zstd))
	return f
}

func trusted(t *testing.T) []signature.PublicKey {
	k, err := signature.ParsePublicKey(testkit.TestPublic)
	testkit.Must(t, err)
	return []signature.PublicKey{k}
}

func served(t *testing.T, o upstream.Options, paths ...string) (map[string]bool, []string) {
	t.Helper()
	c, err := upstream.New(o)
	testkit.Must(t, err)
	var warnings []string
	got, err := c.Served(context.Background(), paths, func(w upstream.Warning) { warnings = append(warnings, w.String()) })
	testkit.Must(t, err)
	return got, warnings
}

func TestServedHTTP(t *testing.T) {
	f := newFixture(t)
	srv := testkit.Serve(t, f.dir)
	o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: f.s.Dir}
	got, warnings := served(t, o, f.glibc, f.gcc, f.app, f.glibc)
	if diff := cmp.Diff(map[string]bool{f.glibc: true, f.gcc: true}, got); diff != "" {
		t.Errorf("served (-want +got):\n%s", diff)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings for a 404: %q", warnings)
	}
	// One request per distinct path, and nix-cache-info once.
	if n, all := srv.Requests(); n != 3 || all != 4 {
		t.Errorf("requests: %d narinfos, %d in all; want 3 and 4", n, all)
	}
}

func TestServedFile(t *testing.T) {
	f := newFixture(t)
	o := upstream.Options{URLs: []string{"file://" + f.dir}, Keys: trusted(t), StoreDir: f.s.Dir}
	got, warnings := served(t, o, f.glibc, f.app)
	if diff := cmp.Diff(map[string]bool{f.glibc: true}, got); diff != "" || len(warnings) > 0 {
		t.Errorf("served (-want +got):\n%s\nwarnings %q", diff, warnings)
	}
}

func TestSignatures(t *testing.T) {
	f := newFixture(t)
	other, _, err := signatureKeyPair("other-1")
	testkit.Must(t, err)
	for _, tc := range []struct {
		name     string
		o        upstream.Options
		want     map[string]bool
		warnings int
	}{
		{"unsigned upstream", upstream.Options{URLs: []string{"file://" + f.unsignedDir}, Keys: trusted(t)}, map[string]bool{}, 1},
		{"unsigned allowed", upstream.Options{URLs: []string{"file://" + f.unsignedDir}, Unsigned: true}, map[string]bool{f.unsignedOK: true}, 0},
		{"other key", upstream.Options{URLs: []string{"file://" + f.dir}, Keys: []signature.PublicKey{other}}, map[string]bool{}, 1},
		{"second upstream", upstream.Options{URLs: []string{"file://" + f.unsignedDir, "file://" + f.dir}, Keys: trusted(t)}, map[string]bool{f.glibc: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.StoreDir = f.s.Dir
			got, warnings := served(t, tc.o, f.unsignedOK, f.glibc)
			if diff := cmp.Diff(tc.want, got); diff != "" || len(warnings) != tc.warnings {
				t.Errorf("served (-want +got):\n%s\nwarnings %q, want %d", diff, warnings, tc.warnings)
			}
		})
	}
	if _, err := upstream.New(upstream.Options{URLs: []string{"file://" + f.dir}}); err == nil {
		t.Error("no key and no Unsigned: no error")
	}
}

func signatureKeyPair(name string) (signature.PublicKey, signature.SecretKey, error) {
	sk, pk, err := signature.GenerateKeypair(name, nil)
	return pk, sk, err
}

func TestBadNarInfo(t *testing.T) {
	f := newFixture(t)
	// The narinfo of glibc served as gcc's, and a garbled one as app's.
	glibc, err := os.ReadFile(filepath.Join(f.dir, testkit.HashPartOfName("glibc")+".narinfo"))
	testkit.Must(t, err)
	testkit.Must(t, os.WriteFile(filepath.Join(f.dir, testkit.HashPartOfName("gcc")+".narinfo"), glibc, 0o644))
	testkit.Must(t, os.WriteFile(filepath.Join(f.dir, testkit.HashPartOfName("app")+".narinfo"), []byte("StorePath "+f.app+"\n"), 0o644))
	o := upstream.Options{URLs: []string{"file://" + f.dir}, Keys: trusted(t), StoreDir: f.s.Dir}
	got, warnings := served(t, o, f.glibc, f.gcc, f.app)
	if diff := cmp.Diff(map[string]bool{f.glibc: true}, got); diff != "" || len(warnings) != 2 {
		t.Errorf("served (-want +got):\n%s\nwarnings %q, want 2", diff, warnings)
	}
}

// An upstream that fails is asked once, not once per path: a hook behind
// a dead upstream waits for one timeout at most.
func TestFailingUpstream(t *testing.T) {
	f := newFixture(t)
	for _, code := range []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			srv := testkit.Serve(t, f.dir)
			srv.SetStatus(func(r *http.Request) int {
				if strings.HasSuffix(r.URL.Path, ".narinfo") {
					return code
				}
				return 0
			})
			o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: f.s.Dir, Jobs: 1}
			got, warnings := served(t, o, f.glibc, f.gcc, f.app)
			if len(got) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], http.StatusText(code)) {
				t.Errorf("served %v, warnings %q: want nothing and one warning naming %d", got, warnings, code)
			}
			if n, _ := srv.Requests(); n != 1 {
				t.Errorf("%d narinfo requests, want 1", n)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	srv := testkit.Serve(t, f.dir)
	t.Cleanup(stop) // before the server's Close, which waits for handlers
	srv.SetStatus(func(r *http.Request) int {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			<-release // answers only once the client gave up
		}
		return 0
	})
	o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: f.s.Dir, Timeout: 100 * time.Millisecond}
	got, warnings := served(t, o, f.glibc, f.gcc)
	stop()
	if len(got) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "timed out") {
		t.Errorf("served %v, warnings %q: want nothing and one timeout", got, warnings)
	}
}

func TestNotACache(t *testing.T) {
	f := newFixture(t)
	empty := t.TempDir()
	srv := testkit.Serve(t, empty)
	o := upstream.Options{URLs: []string{srv.URL, "file://" + f.dir}, Keys: trusted(t), StoreDir: f.s.Dir}
	got, warnings := served(t, o, f.glibc, f.gcc)
	if len(got) != 2 || len(warnings) != 1 || !strings.Contains(warnings[0], "nix-cache-info") {
		t.Errorf("served %v, warnings %q", got, warnings)
	}
	if n, all := srv.Requests(); n != 0 || all != 1 {
		t.Errorf("requests to a non-cache: %d narinfos, %d in all; want 0 and 1", n, all)
	}
}

func TestConcurrencyBound(t *testing.T) {
	s := testkit.NewStore(t)
	var paths []string
	for _, p := range s.Add(t, testkit.LibraryTree(40)...) {
		paths = append(paths, p.StorePath)
	}
	dir := t.TempDir()
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: "+s.Dir+"\n"), 0o644))
	var mu sync.Mutex
	inFlight, most := 0, 0
	srv := testkit.Serve(t, dir)
	srv.SetStatus(func(r *http.Request) int {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(time.Millisecond) // overlap, so an unbounded client shows
		mu.Lock()
		inFlight--
		mu.Unlock()
		return 0
	})
	o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: s.Dir, Jobs: 3}
	got, warnings := served(t, o, paths...)
	if len(got) != 0 || len(warnings) != 0 {
		t.Errorf("served %v, warnings %q", got, warnings)
	}
	if n, _ := srv.Requests(); n != len(paths) || most > 3 {
		t.Errorf("%d requests for %d paths, at most %d at once (bound 3)", n, len(paths), most)
	}
}

func TestMemory(t *testing.T) {
	f := newFixture(t)
	srv := testkit.Serve(t, f.dir)
	mem := t.TempDir()
	o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: f.s.Dir, MemoryDir: mem}
	served(t, o, f.glibc, f.gcc, f.app)
	before, _ := srv.Requests()
	got, _ := served(t, o, f.glibc, f.gcc, f.app)
	after, _ := srv.Requests()
	// Positive answers are remembered, negative ones asked again.
	if diff := cmp.Diff(map[string]bool{f.glibc: true, f.gcc: true}, got); diff != "" || after-before != 1 {
		t.Errorf("second run: %d narinfo requests, want 1 (app); served (-want +got):\n%s", after-before, diff)
	}
	// Other keys: nothing remembered counts.
	other, _, err := signatureKeyPair("other-1")
	testkit.Must(t, err)
	o.Keys = []signature.PublicKey{other}
	if got, _ := served(t, o, f.glibc); len(got) != 0 {
		t.Errorf("remembered across keys: %v", got)
	}
	// Expired.
	o.Keys, o.TTL = trusted(t), time.Nanosecond
	served(t, o, f.glibc)
	if n, _ := srv.Requests(); n != after+2 {
		t.Errorf("expired answer not asked again: %d requests, want %d", n, after+2)
	}
}

func TestHTTPSAndNetrc(t *testing.T) {
	f := newFixture(t)
	files := http.FileServer(http.Dir(f.dir))
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		mu.Lock()
		auth = append(auth, user+":"+pass)
		mu.Unlock()
		if user != "ci" || pass != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tmp := t.TempDir()
	ca := filepath.Join(tmp, "ca.pem")
	testkit.Must(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644))
	netrc := filepath.Join(tmp, "netrc")
	testkit.Must(t, os.WriteFile(netrc, []byte("machine other.example login x password y\nmachine 127.0.0.1\n  login ci\n  password s3cret\n"), 0o600))
	env := map[string]string{"NIX_SSL_CERT_FILE": ca, "SSL_CERT_FILE": "/nonexistent"}
	o := upstream.Options{URLs: []string{srv.URL}, Keys: trusted(t), StoreDir: f.s.Dir,
		CAFile: upstream.CAFileFromEnv(func(k string) string { return env[k] }), Netrc: netrc}
	got, warnings := served(t, o, f.glibc, f.app)
	if diff := cmp.Diff(map[string]bool{f.glibc: true}, got); diff != "" || len(warnings) > 0 {
		t.Errorf("served (-want +got):\n%s\nwarnings %q", diff, warnings)
	}
	for _, a := range auth {
		if a != "ci:s3cret" {
			t.Errorf("request with credentials %q", a)
		}
	}
	// Without the server's certificate: a warning, nothing served.
	o.CAFile = ""
	if got, warnings := served(t, o, f.glibc); len(got) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "certificate") {
		t.Errorf("untrusted certificate: served %v, warnings %q", got, warnings)
	}
	// Without netrc: 401 is a failure, with a warning.
	o.CAFile, o.Netrc = ca, ""
	if got, warnings := served(t, o, f.glibc); len(got) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "401") {
		t.Errorf("no credentials: served %v, warnings %q", got, warnings)
	}
}

// A password in an upstream URL appears in no message.
func TestURLPassword(t *testing.T) {
	f := newFixture(t)
	srv := testkit.Serve(t, f.dir)
	srv.SetStatus(func(*http.Request) int { return http.StatusInternalServerError })
	u := strings.Replace(srv.URL, "http://", "http://ci:s3cret@", 1)
	_, warnings := served(t, upstream.Options{URLs: []string{u}, Keys: trusted(t), StoreDir: f.s.Dir}, f.glibc)
	if len(warnings) != 1 || strings.Contains(warnings[0], "s3cret") {
		t.Errorf("warnings %q: want one, without the password", warnings)
	}
	if _, err := upstream.New(upstream.Options{URLs: []string{"ftp://ci:s3cret@host/"}, Unsigned: true}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL: %v", err)
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"s3://bucket", "file://relative/dir", "http://", "ftp://x"} {
		if _, err := upstream.New(upstream.Options{URLs: []string{u}, Unsigned: true}); err == nil {
			t.Errorf("%q: no error", u)
		}
	}
}
