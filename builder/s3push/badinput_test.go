package s3push_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/s3push"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want s3push.Target
	}{
		{"s3://cache", s3push.Target{Bucket: "cache", Secure: true}},
		{"s3://cache?region=eu-west-1&profile=ci", s3push.Target{Bucket: "cache", Secure: true, Region: "eu-west-1", Profile: "ci"}},
		{"s3://cache?endpoint=http://127.0.0.1:9000&region=us-east-1",
			s3push.Target{Bucket: "cache", Endpoint: "127.0.0.1:9000", Region: "us-east-1"}},
		{"s3://cache?endpoint=https://acc.r2.cloudflarestorage.com/", s3push.Target{Bucket: "cache", Endpoint: "acc.r2.cloudflarestorage.com", Secure: true}},
		{"s3://cache?endpoint=minio:9000&scheme=http", s3push.Target{Bucket: "cache", Endpoint: "minio:9000"}},
		{"s3://cache?endpoint=minio.example.org", s3push.Target{Bucket: "cache", Endpoint: "minio.example.org", Secure: true}},
		{"s3://cache/a/b/?endpoint=minio:9000", s3push.Target{Bucket: "cache", Prefix: "a/b/", Endpoint: "minio:9000", Secure: true}},
	} {
		got, err := s3push.ParseURL(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.url, d)
		}
	}
	for url, msg := range map[string]string{
		"http://host/cache":                         "not an s3:// URL",
		"s3://":                                     "no bucket name",
		"s3://Bad_Bucket":                           "bucket name",
		"s3://cache?compression=zstd":               `unknown parameter "compression"`,
		"s3://cache?region=a&region=b":              "given 2 times",
		"s3://cache?scheme=ftp":                     "want http or https",
		"s3://cache?scheme=http":                    "needs an endpoint",
		"s3://cache?endpoint=ftp://h":               "want an http:// or https:// URL",
		"s3://cache?endpoint=http://h/path":         "without a path",
		"s3://cache?endpoint=http://h&scheme=https": "contradicts",
		"s3://cache/a/../b":                         "segment",
		"s3://cache?endpoint=h/p":                   "HOST[:PORT]",
	} {
		_, err := s3push.ParseURL(url)
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), url) {
			t.Errorf("%s: error %v, want one naming the URL and saying %q", url, err, msg)
		}
	}
}

// Each bad input fails with an error that names the bucket, URL or file,
// and publishes nothing.
func TestPushBadInput(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 3, Big: 1000})
	url := s.URL("cache")

	noNar, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 2, Big: 1000, Seed: 1})
	nars, _ := filepath.Glob(filepath.Join(noNar, "nar", "*"))
	os.Remove(nars[0])
	notClosed, paths := s3server.MakeCache(t, s3server.CacheSpec{Paths: 2, Big: 1000, Seed: 2})
	os.Remove(filepath.Join(notClosed, narinfo.HashPart(paths[0])+".narinfo"))
	otherStore := t.TempDir()
	os.WriteFile(filepath.Join(otherStore, "nix-cache-info"), []byte("StoreDir: /gnu/store\n"), 0o644)
	empty := t.TempDir()
	dead := deadEndpoint(t)

	for _, c := range []struct {
		name, dir, url string
		env            map[string]string
		want           []string
	}{
		{name: "wrong secret", dir: dir, url: url, env: map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"},
			want: []string{"s3://cache", "access denied", "AWS_ACCESS_KEY_ID"}},
		{name: "unknown key", dir: dir, url: url, env: map[string]string{"AWS_ACCESS_KEY_ID": "nobody"},
			want: []string{"s3://cache", "access denied"}},
		{name: "missing profile", dir: dir, url: url + "&profile=nope", env: map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
			want: []string{"s3://cache", `profile "nope"`}},
		{name: "missing bucket", dir: dir, url: s.URL("nobucket"), want: []string{"s3://nobucket", `bucket "nobucket" does not exist`}},
		{name: "unreachable", dir: dir, url: "s3://cache?endpoint=http://" + dead, want: []string{"s3://cache", "cannot reach " + dead}},
		{name: "not a cache", dir: empty, url: url, want: []string{empty, "not a binary cache", "nix-cache-info"}},
		{name: "no dir", dir: filepath.Join(empty, "gone"), url: url, want: []string{filepath.Join(empty, "gone"), "no such file"}},
		{name: "missing NAR", dir: noNar, url: url, want: []string{".narinfo: its NAR", "no such file"}},
		{name: "reference missing", dir: notClosed, url: url, want: []string{".narinfo: its reference", "neither in " + notClosed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			start := time.Now()
			_, err := pushTo(t, c.dir, c.url, nil)
			if err == nil {
				t.Fatal("push succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v", d)
			}
			if objs := s.Objects(t, "cache"); len(objs) > 0 {
				t.Errorf("published %v", keys(objs))
			}
		})
	}
	// A bucket that is a cache for another store.
	if _, err := pushTo(t, otherStore, url, nil); err != nil {
		t.Fatal(err)
	}
	_, err := pushTo(t, dir, url, nil)
	if err == nil || !strings.Contains(err.Error(), "the bucket is a cache for store /gnu/store") {
		t.Errorf("push to a bucket of another store: %v", err)
	}
	if objs := s.Objects(t, "cache"); len(objs) != 1 {
		t.Errorf("published %v", keys(objs))
	}
}

// deadEndpoint is an address where nothing listens.
func deadEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Invalid entries are skipped and reported, the rest is published, and
// the push fails at the end: nothing a symlink points to reaches the
// bucket, and no message carries it.
func TestPushHostileEntries(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, paths := s3server.MakeCache(t, s3server.CacheSpec{Paths: 3, Big: 1000})
	o := testkit.NewOutside(t, "secret", "narinfo")
	ls := filepath.Join(dir, narinfo.HashPart(paths[0])+".ls")
	os.Remove(ls)
	testkit.Must(t, os.Symlink(o.Path("secret"), ls))
	testkit.Must(t, os.Symlink(o.Path("narinfo"), filepath.Join(dir, "11111111111111111111111111111111.narinfo")))
	testkit.Must(t, os.MkdirAll(filepath.Join(dir, "debuginfo"), 0o755))
	testkit.Must(t, os.Symlink(o.Path("secret"), filepath.Join(dir, "debuginfo", "0123456789abcdef0123456789abcdef01234567.debug")))
	testkit.Must(t, os.MkdirAll(filepath.Join(dir, "log"), 0o755))
	testkit.Must(t, os.Symlink(o.Path("secret"), filepath.Join(dir, "log", "0123456789abcdfghijklmnpqrsvwxyz-x.drv")))

	var invalid []string
	_, err := pushTo(t, dir, s.URL("cache"), func(e s3push.Event) {
		testkit.NoSentinel(t, e.Key+e.Msg)
		if e.Kind == s3push.Invalid {
			rel, _ := filepath.Rel(dir, e.Key)
			invalid = append(invalid, rel+": "+e.Msg)
		}
	})
	if !errors.Is(err, s3push.ErrInvalid) {
		t.Errorf("push of a hostile cache: %v, want ErrInvalid", err)
	}
	sort.Strings(invalid)
	want := []string{
		"11111111111111111111111111111111.narinfo: a symbolic link (not followed)",
		narinfo.HashPart(paths[0]) + ".ls: a symbolic link (not followed)",
		"debuginfo/0123456789abcdef0123456789abcdef01234567.debug: a symbolic link (not followed)",
		"log/0123456789abcdfghijklmnpqrsvwxyz-x.drv: a symbolic link (not followed)",
	}
	sort.Strings(want)
	if d := cmp.Diff(want, invalid); d != "" {
		t.Errorf("invalid entries (-want +got):\n%s", d)
	}
	objs := s.Objects(t, "cache")
	for key := range objs {
		data, err := s.Client.GetObject(context.Background(), "cache", key, minio.GetObjectOptions{})
		testkit.Must(t, err)
		b, err := io.ReadAll(data)
		data.Close()
		testkit.Must(t, err)
		testkit.NoSentinel(t, key+string(b))
	}
	for _, p := range paths {
		if _, ok := objs[narinfo.HashPart(p)+".narinfo"]; !ok {
			t.Errorf("the valid narinfo of %s was not published", p)
		}
	}
	if _, ok := objs[narinfo.HashPart(paths[0])+".ls"]; ok {
		t.Errorf("the symlinked listing was published")
	}
}
