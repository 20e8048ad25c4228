package s3push_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/s3push"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

func pushTo(t *testing.T, dir, url string, events func(s3push.Event)) (s3push.Stats, error) {
	t.Helper()
	target, err := s3push.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	// 5 MiB parts (S3's least) and 2 retries keep the test small and quick.
	o := s3push.Options{Dir: dir, Target: target, Jobs: 4, Threads: 2, PartSize: 5 << 20, MaxRetries: 2, Timeout: 5 * time.Second, LockWait: -1}
	return s3push.Push(context.Background(), o, events)
}

// localFiles maps the cache's files to publish (key) to their content.
func localFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var wantType = map[string]string{
	".narinfo":       "text/x-nix-narinfo",
	"nix-cache-info": "text/x-nix-cache-info",
	".nar":           "application/x-nix-nar",
	".ls":            "application/json",
	".debug":         "application/json",
}

func typeOf(key string) string {
	for suffix, typ := range wantType {
		if strings.HasSuffix(key, suffix) {
			return typ
		}
	}
	return "?"
}

// checkBucket asserts the bucket holds exactly the cache's files, each
// with Nix's Content-Type and without Content-Encoding (a HEAD of each).
func checkBucket(t *testing.T, s *s3server.Server, bucket, prefix, dir string) {
	t.Helper()
	want := localFiles(t, dir)
	objs := s.Objects(t, bucket)
	got := map[string][]byte{}
	for key := range objs {
		rel := strings.TrimPrefix(key, prefix)
		info, err := s.Client.StatObject(context.Background(), bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatalf("HEAD %s: %v", key, err)
		}
		if enc := info.Metadata.Get("Content-Encoding"); enc != "" {
			t.Errorf("%s: Content-Encoding %q, want none", key, enc)
		}
		if info.ContentType != typeOf(rel) {
			t.Errorf("%s: Content-Type %q, want %q", key, info.ContentType, typeOf(rel))
		}
		got[rel] = s.Get(t, bucket, key)
	}
	if d := cmp.Diff(keys(want), keys(got)); d != "" {
		t.Fatalf("objects (-cache +bucket):\n%s", d)
	}
	for k := range want {
		if string(want[k]) != string(got[k]) {
			t.Errorf("%s: the bucket's content differs from the cache's", k)
		}
	}
	if p := s.Problems(t, bucket, prefix); len(p) > 0 {
		t.Errorf("inconsistent bucket:\n%s", strings.Join(p, "\n"))
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// A push stores every file (a large NAR as a multipart upload), in an
// order that keeps the bucket consistent; a second push uploads nothing;
// a narinfo changed since (signed) is uploaded again, alone.
func TestPush(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 7, Big: 12 << 20})

	var order []string
	planned := s3push.Event{}
	stats, err := pushTo(t, dir, s.URL("cache"), func(e s3push.Event) {
		switch e.Kind {
		case s3push.Planned:
			planned = e
		case s3push.Uploaded:
			order = append(order, e.Key)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBucket(t, s, "cache", "", dir)
	files := localFiles(t, dir)
	if stats.Uploaded != len(files) || stats.Skipped != 0 || planned.Objects != len(files) {
		t.Errorf("first push: %+v, planned %+v; want %d objects uploaded", stats, planned, len(files))
	}
	checkOrder(t, dir, order)

	stats, err = pushTo(t, dir, s.URL("cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != 0 || stats.Skipped != len(files) {
		t.Errorf("second push: %+v, want 0 uploaded, %d skipped", stats, len(files))
	}

	names, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	signed := names[0]
	data, _ := os.ReadFile(signed)
	data = append(data, "Sig: test-1:"+strings.Repeat("A", 86)+"==\n"...)
	if err := os.WriteFile(signed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	order = nil
	stats, err = pushTo(t, dir, s.URL("cache"), func(e s3push.Event) {
		if e.Kind == s3push.Uploaded {
			order = append(order, e.Key)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{filepath.Base(signed)}, order); d != "" {
		t.Errorf("after signing one narinfo, uploaded (-want +got):\n%s", d)
	}
	checkBucket(t, s, "cache", "", dir)
}

// checkOrder asserts that each narinfo was uploaded after its NAR and its
// references' narinfos, and nix-cache-info last.
func checkOrder(t *testing.T, dir string, order []string) {
	t.Helper()
	at := map[string]int{}
	for i, k := range order {
		at[k] = i
	}
	if order[len(order)-1] != "nix-cache-info" {
		t.Errorf("nix-cache-info was not uploaded last: %q", order)
	}
	for _, k := range order {
		if !strings.HasSuffix(k, ".narinfo") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, k))
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		before := []string{ni.URL}
		for _, r := range ni.References {
			if h := narinfo.HashPart(r) + ".narinfo"; h != k {
				before = append(before, h)
			}
		}
		for _, b := range before {
			if at[b] >= at[k] {
				t.Errorf("%s uploaded before %s", k, b)
			}
		}
	}
}

// A key prefix, as Nix 2.33 and later read it.
func TestPushPrefix(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 2, Big: 1000})
	url := "s3://cache/some/prefix?endpoint=http://" + s.Endpoint + "&region=us-east-1"
	if _, err := pushTo(t, dir, url, nil); err != nil {
		t.Fatal(err)
	}
	checkBucket(t, s, "cache", "some/prefix/", dir)
}

// Multipart uploads a killed push left are aborted by the next push once
// older than AbandonAge, or at once if they are of a NAR the push stores;
// a younger one of another key, maybe another push's, running now, is left
// to complete.
func TestPushAbortsAbandonedUploads(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	core := minio.Core{Client: s.Client}
	ctx := context.Background()
	part := strings.Repeat("x", 5<<20)
	start := func(key string) (id string, etag string) {
		id, err := core.NewMultipartUpload(ctx, "cache", key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := core.PutObjectPart(ctx, "cache", key, id, 1, strings.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{})
		if err != nil {
			t.Fatalf("upload a part of %s: %v", key, err)
		}
		return id, p.ETag
	}
	t0 := time.Now()
	start("nar/left-behind.nar")
	// The two uploads start a gap apart; AbandonAge, set just before the
	// push, falls in the middle of the gap, whatever time the setup took on
	// a loaded machine: the push's listing may come up to gap/2 late (less
	// a second, as initiated times may be whole seconds).
	const gap = 4 * time.Second
	time.Sleep(gap)
	runningID, runningETag := start("nar/running.nar")
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 1, Big: 100})
	// A young upload of one of the cache's own NARs: the push stores that
	// NAR, so the upload can only store it again, and goes too.
	nars, err := filepath.Glob(filepath.Join(dir, "nar", "*"))
	if err != nil || len(nars) == 0 {
		t.Fatalf("no NAR in %s: %v", dir, err)
	}
	start("nar/" + filepath.Base(nars[0]))
	target, err := s3push.ParseURL(s.URL("cache"))
	if err != nil {
		t.Fatal(err)
	}
	o := s3push.Options{Dir: dir, Target: target, MaxRetries: 2, Timeout: 5 * time.Second, LockWait: -1,
		AbandonAge: time.Since(t0) - gap/2}
	stats, err := s3push.Push(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Aborted != 2 {
		t.Errorf("aborted %d incomplete uploads, want 2", stats.Aborted)
	}
	var left []string
	for u := range s.Client.ListIncompleteUploads(ctx, "cache", "", true) {
		left = append(left, u.Key)
	}
	if diff := cmp.Diff([]string{"nar/running.nar"}, left); diff != "" {
		t.Errorf("incomplete uploads after the push (-want +got):\n%s", diff)
	}
	// The other push's upload completes.
	if _, err := core.CompleteMultipartUpload(ctx, "cache", "nar/running.nar", runningID,
		[]minio.CompletePart{{PartNumber: 1, ETag: runningETag}}, minio.PutObjectOptions{}); err != nil {
		t.Errorf("complete the running upload after the push: %v", err)
	}

	// AbandonAge < 0: every incomplete upload goes, however young and
	// whatever its key.
	start("nar/just-killed.nar")
	o.AbandonAge = -1
	if stats, err = s3push.Push(ctx, o, nil); err != nil {
		t.Fatal(err)
	}
	if stats.Aborted != 1 {
		t.Errorf("with AbandonAge < 0: aborted %d incomplete uploads, want 1", stats.Aborted)
	}
	for u := range s.Client.ListIncompleteUploads(ctx, "cache", "", true) {
		t.Errorf("with AbandonAge < 0: incomplete upload of %s left", u.Key)
	}
}

// Two pushes of one cache into one bucket at once (CI jobs sharing a
// bucket) both succeed and leave no incomplete upload: the one that
// finishes first leaves alone the other's upload of a NAR it stored, since
// that upload gained parts while it ran.
func TestConcurrentPushes(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 6, Big: 40 << 20})
	target, err := s3push.ParseURL(s.URL("cache"))
	if err != nil {
		t.Fatal(err)
	}
	o := s3push.Options{Dir: dir, Target: target, Jobs: 2, Threads: 1, PartSize: 5 << 20,
		MaxRetries: 2, Timeout: 5 * time.Second, LockWait: -1}
	big := largestNAR(t, dir)

	// The slow push: its upload of the large NAR is held back (progress
	// events come from the reader the upload draws from), a part about
	// every 500 ms, 4 s in all: still open when the fast push ends.
	started := make(chan struct{})
	var once sync.Once
	slow := func(e s3push.Event) {
		if e.Kind == s3push.Progress && e.Key == big {
			once.Do(func() { close(started) })
			time.Sleep(100 * time.Millisecond)
		}
	}
	var slowStats s3push.Stats
	slowErr := make(chan error, 1)
	go func() {
		var err error
		slowStats, err = s3push.Push(context.Background(), o, slow)
		slowErr <- err
	}()
	select {
	case <-started:
	case err := <-slowErr:
		t.Fatalf("the slow push ended before it uploaded %s: %v", big, err)
	case <-time.After(proc.Timeout):
		t.Fatalf("the slow push did not start uploading %s within %v", big, proc.Timeout)
	}
	// The fast push takes over a second, long enough to see the slow
	// one's upload grow.
	fast := o
	fast.Threads = 4
	stats, err := s3push.Push(context.Background(), fast, func(e s3push.Event) {
		if e.Kind == s3push.Uploaded {
			time.Sleep(60 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatalf("the fast push: %v", err)
	}
	select {
	case err := <-slowErr:
		if err != nil {
			t.Fatalf("the slow push: %v", err)
		}
	case <-time.After(proc.Timeout):
		t.Fatalf("the slow push did not end within %v of the fast one", proc.Timeout)
	}
	if stats.Aborted != 0 {
		t.Errorf("the fast push aborted %d uploads, want none (the slow push's of %s was live)", stats.Aborted, big)
	}
	if slowStats.Uploaded != stats.Uploaded+stats.Skipped {
		t.Errorf("the slow push uploaded %d objects, want all %d: its upload of %s was taken as done by another", slowStats.Uploaded, stats.Uploaded+stats.Skipped, big)
	}
	t.Logf("fast push: %+v; slow push: %+v", stats, slowStats)
	checkBucket(t, s, "cache", "", dir)
	for u := range s.Client.ListIncompleteUploads(context.Background(), "cache", "", true) {
		t.Errorf("incomplete upload of %s left", u.Key)
	}
}

// largestNAR is the key of the largest NAR of the cache at dir.
func largestNAR(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "nar", "*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no NAR in %s: %v", dir, err)
	}
	var key string
	var size int64 = -1
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil && fi.Size() > size {
			key, size = "nar/"+filepath.Base(n), fi.Size()
		}
	}
	return key
}

// Without credentials, requests are anonymous: a bucket whose policy lets
// anyone write takes the push, a private one refuses it.
func TestPushAnonymous(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	s.MakeBucket(t, "open", s3server.PublicReadWrite)
	s.MakeBucket(t, "closed", s3server.Private)
	// Small: versitygw lets no anonymous user start a multipart upload.
	dir, _ := s3server.MakeCache(t, s3server.CacheSpec{Paths: 2, Big: 1000})
	if _, err := pushTo(t, dir, s.URL("open"), nil); err != nil {
		t.Fatal(err)
	}
	checkBucket(t, s, "open", "", dir)
	if _, err := pushTo(t, dir, s.URL("closed"), nil); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("anonymous push to a private bucket: %v", err)
	}
}
