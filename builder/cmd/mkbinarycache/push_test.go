package main_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

// pushCLI runs mkbinarycache in this process, with the test's
// environment (the server's keys): its exit code and stderr.
func pushCLI(args ...string) (int, string) {
	code, _, stderr := runMainEnv(os.Getenv, args...)
	return code, stderr
}

// push runs mkbinarycache push and fails the test unless it succeeds.
func push(t *testing.T, args ...string) string {
	t.Helper()
	code, stderr := pushCLI(append([]string{"push"}, args...)...)
	if code != cli.ExitOK {
		t.Fatalf("push %q: exit %d:\n%s", args, code, stderr)
	}
	return stderr
}

// Real Nix substitutes the fixture from a pushed bucket: Nix 2.8 over
// plain HTTP (path-style, public-read), 2.26 over HTTP with signatures
// required, 2.34 through its own s3:// store, also with a key prefix.
// Each runs on a fresh host with max-jobs 0, so it must substitute.
func TestPushNix(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	versions := nixtest.Versions(t)
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "pub", s3server.PublicRead)

	dir := filepath.Join(t.TempDir(), "cache")
	if code, stderr := pushCLI("--out", dir, "--quiet", "--nar-listing", fx.Hello); code != 0 {
		t.Fatalf("build cache: exit %d: %s", code, stderr)
	}
	files := len(testkit.Files(t, dir))
	out := push(t, dir, s.URL("pub"))
	for _, w := range []string{"uploaded nix-cache-info", fmt.Sprintf("%d objects uploaded", files), "0 already in the bucket"} {
		if !strings.Contains(out, w) {
			t.Errorf("first push output lacks %q:\n%s", w, out)
		}
	}
	if p := s.Problems(t, "pub", ""); len(p) > 0 {
		t.Fatalf("inconsistent bucket: %q", p)
	}
	substitute(t, versions[0], s.HTTPURL("pub"), "", fx)

	// Signed later: only the narinfos change, and only they are uploaded.
	keys := t.TempDir()
	sec, pub := filepath.Join(keys, "k.sec"), filepath.Join(keys, "k.pub")
	if code, stderr := pushCLI("keygen", "push-test-1", "--secret-key-file", sec, "--public-key-file", pub); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	if code, stderr := pushCLI("sign", "--key-file", sec, dir); code != 0 {
		t.Fatalf("sign: %s", stderr)
	}
	out = push(t, dir, s.URL("pub"))
	if want := fmt.Sprintf("%d objects uploaded", len(fx.Closure)); !strings.Contains(out, want) {
		t.Errorf("push after signing: want %q:\n%s", want, out)
	}
	out = push(t, dir, s.URL("pub"))
	if want := fmt.Sprintf("0 objects uploaded (0 B), %d already in the bucket", files); !strings.Contains(out, want) {
		t.Errorf("third push: want %q:\n%s", want, out)
	}
	prefixed := "s3://pub/sub/dir?endpoint=http://" + s.Endpoint + "&region=us-east-1"
	push(t, dir, prefixed)

	key, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions[1:] {
		t.Run("nix-"+v.Name, func(t *testing.T) {
			v.Require(t)
			if v.Name == "2.26" {
				// Debian's 2.26 has no s3:// store.
				substitute(t, v, s.HTTPURL("pub"), string(key), fx)
				return
			}
			substitute(t, v, s.URL("pub"), string(key), fx)
			substitute(t, v, prefixed, string(key), fx)
		})
	}
}

// substitute builds the fixture's hello on a fresh host of Nix v with
// max-jobs 0 from url alone, requiring signatures by key unless it is "".
func substitute(t *testing.T, v nixtest.Version, url, key string, fx *nixtest.Fixture) {
	t.Helper()
	conf := "substituters = " + url + "\ntrusted-substituters = " + url + "\nmax-jobs = 0\n"
	if key == "" {
		conf += "require-sigs = false\n"
	} else {
		conf += "require-sigs = true\ntrusted-public-keys = " + key + "\n"
	}
	script := "export NIX_CONFIG=" + nixtest.ShellQuote(conf) + " && " + nixtest.FixtureScript(t) + ` && "$hello/bin/hello"`
	out, err := v.FreshStore(t, script)
	if err != nil {
		t.Fatalf("Nix %s from %s: %v\n%s", v.Name, url, err, out)
	}
	if testing.Verbose() {
		t.Logf("Nix %s from %s:\n%s", v.Name, url, out)
	}
	for _, w := range []string{"copying path '" + fx.Hello + "' from '" + strings.TrimSuffix(url, "?"), "Hello from libgreet!"} {
		if !strings.Contains(out, w) {
			t.Errorf("Nix %s from %s: output lacks %q:\n%s", v.Name, url, w, out)
		}
	}
}

// A push killed (SIGKILL) at random moments never leaves a narinfo whose
// NAR or references' narinfos are missing, and running it again completes
// the bucket and aborts the multipart uploads the killed one left.
func TestPushKilled(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 30, Big: 24 << 20})
	files := len(testkit.Files(t, dir))
	run := func(bucket string, kill time.Duration) (killed bool, out string) {
		cmd := exec.Command(binary(t), "push", "--jobs", "3", "--threads", "2", "--part-size", "5", dir, s.URL(bucket))
		var b bytes.Buffer // one writer for both: exec serializes its writes
		cmd.Stdout, cmd.Stderr = &b, &b
		push := proc.Start(t, cmd, "push to "+bucket)
		if kill > 0 {
			timer := time.AfterFunc(kill, push.Kill)
			defer timer.Stop()
		}
		err := push.Wait(t, proc.Timeout)
		if proc.Killed(err) {
			return true, b.String()
		}
		if err != nil {
			t.Fatalf("push to %s: %v\n%s", bucket, err, b.String())
		}
		return false, b.String()
	}
	// The quicker of two whole pushes: the first one may pay for a cold
	// server and a busy machine, and kills timed by it would come too late.
	whole := time.Duration(1 << 62)
	for _, bucket := range []string{"whole-1", "whole-2"} {
		s.MakeBucket(t, bucket, s3server.Private)
		start := time.Now()
		run(bucket, 0)
		whole = min(whole, time.Since(start))
	}
	t.Logf("a whole push takes %v", whole)
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	const rounds = 8
	kills := 0
	for i := range rounds {
		bucket := fmt.Sprintf("killed-%d", i)
		s.MakeBucket(t, bucket, s3server.Private)
		// Spread over the whole push, with jitter: early (listing,
		// NARs), middle (multipart parts), late (narinfo layers).
		at := time.Duration((float64(i) + rnd.Float64()) / rounds * float64(whole))
		killed, _ := run(bucket, max(at, time.Millisecond))
		if killed {
			kills++
		}
		if p := s.Problems(t, bucket, ""); len(p) > 0 {
			t.Fatalf("killed after %v: inconsistent bucket:\n%s", at, strings.Join(p, "\n"))
		}
		// The server may still finish requests the killed push had
		// sent (a part, a new upload): a re-run seconds later, as in CI,
		// sees them done. Without the wait, a part landing during the
		// re-run makes that upload look like a live push's.
		if killed {
			settled(t, s, bucket)
		}
		left := len(s.Objects(t, bucket))
		t0 := time.Now()
		_, out := run(bucket, 0)
		t.Logf("killed after %v (%v) with %d of %d objects stored; the re-run took %v", at, killed, left, files, time.Since(t0))
		if n := len(s.Objects(t, bucket)); n != files {
			t.Errorf("after the re-run: %d objects, want %d:\n%s", n, files, out)
		}
		if p := s.Problems(t, bucket, ""); len(p) > 0 {
			t.Errorf("after the re-run: inconsistent bucket:\n%s", strings.Join(p, "\n"))
		}
		for u := range s.Client.ListIncompleteUploads(context.Background(), bucket, "", true) {
			t.Errorf("after the re-run: incomplete upload of %s left", u.Key)
		}
	}
	if kills < rounds/2 {
		t.Errorf("only %d of %d pushes were killed before they ended (a whole push takes %v)", kills, rounds, whole)
	}
}

// settled waits until the bucket's incomplete uploads and their parts stop
// changing: the same for three polls in a row.
func settled(t *testing.T, s *s3server.Server, bucket string) {
	t.Helper()
	core := minio.Core{Client: s.Client}
	state := func() string {
		var b strings.Builder
		for u := range s.Client.ListIncompleteUploads(context.Background(), bucket, "", true) {
			if u.Err != nil {
				t.Fatalf("listing the incomplete uploads of %s: %v", bucket, u.Err)
			}
			parts, err := core.ListObjectParts(context.Background(), bucket, u.Key, u.UploadID, 0, 10000)
			if err != nil {
				// Aborted or completed between the two requests.
				fmt.Fprintf(&b, "%s %s gone\n", u.Key, u.UploadID)
				continue
			}
			fmt.Fprintf(&b, "%s %s %d\n", u.Key, u.UploadID, len(parts.ObjectParts))
		}
		return b.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	last, same := state(), 0
	for same < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the uploads of bucket %s still changed 30 s after the push was killed:\n%s", bucket, last)
		}
		time.Sleep(200 * time.Millisecond)
		now := state()
		if now == last {
			same++
		} else {
			last, same = now, 0
		}
	}
}

// Bad input: each case exits non-zero (2 for usage errors) with a message
// naming the URL, bucket or directory, and publishes nothing.
func TestPushBadInput(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 2, Big: 100})
	notCache := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{dir}, cli.ExitUsage, []string{"give a cache directory and an s3:// URL"}},
		{[]string{dir, "https://example.org/cache"}, cli.ExitUsage, []string{"https://example.org/cache", "not an s3:// URL"}},
		{[]string{dir, "s3://cache?endpoint=h&compression=xz"}, cli.ExitUsage, []string{`unknown parameter "compression"`}},
		{[]string{"--part-size", "1", dir, s.URL("cache")}, cli.ExitUsage, []string{"--part-size"}},
		{[]string{notCache, s.URL("cache")}, cli.ExitFailure, []string{notCache, "not a binary cache"}},
		{[]string{dir, s.URL("nobucket")}, cli.ExitFailure, []string{`bucket "nobucket" does not exist`}},
	} {
		code, stderr := pushCLI(append([]string{"push"}, c.args...)...)
		if code != c.code {
			t.Errorf("push %q: exit %d, want %d:\n%s", c.args, code, c.code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("push %q: message lacks %q:\n%s", c.args, w, stderr)
			}
		}
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	code, stderr := pushCLI("push", dir, s.URL("cache"))
	if code != cli.ExitFailure || !strings.Contains(stderr, "s3://cache") || !strings.Contains(stderr, "access denied") {
		t.Errorf("wrong secret: exit %d:\n%s", code, stderr)
	}
	if objs := s.Objects(t, "cache"); len(objs) > 0 {
		t.Errorf("bad input published %d objects", len(objs))
	}
}
