// Package s3server runs a real S3 server for tests: versitygw (Apache-2.0),
// installed by scripts/setup.sh, storing each object as a file of a
// temporary directory, on a free port of 127.0.0.1.
package s3server

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is 127.0.0.1:PORT.
	Endpoint string
	// Access and Secret are the root user's keys.
	Access, Secret string
	// Dir holds a directory per bucket, a file per object.
	Dir string
	// Client is a client with the root user's keys.
	Client *minio.Client
	log    *os.File
}

// Require skips the test when versitygw is missing; when
// MKBINARYCACHE_REQUIRE_NIX=1 it fails instead, as for Nix, so that CI
// cannot pass by skipping.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("versitygw")
	if err == nil {
		return p
	}
	if os.Getenv(nixtest.RequireEnv) == "1" {
		t.Fatalf("versitygw required (%s=1) but not found: run scripts/setup.sh", nixtest.RequireEnv)
	}
	t.Skip("skipping: versitygw not found (scripts/setup.sh installs it)")
	return ""
}

// Start starts a server for the test; it stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	s := &Server{Access: "mkbinarycache-test", Secret: "mkbinarycache-test-secret", Dir: t.TempDir()}
	var err error
	if s.log, err = os.Create(filepath.Join(t.TempDir(), "versitygw.log")); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(bin, "--access", s.Access, "--secret", s.Secret, "--port", s.Endpoint, "--quiet", "posix", s.Dir)
		cmd.Stdout, cmd.Stderr = s.log, s.log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if waitListening(s.Endpoint, exited) {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			break
		}
		cmd.Process.Kill()
		<-exited
		if attempt == 2 { // the port was taken in between, three times?
			t.Fatalf("versitygw did not start on %s:\n%s", s.Endpoint, s.Log())
		}
	}
	s.Client = s.NewClient(t, credentials.NewStaticV4(s.Access, s.Secret, ""))
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Log is what the server printed.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.log.Name())
	return string(data)
}

// NewClient is a client of the server with creds (path-style, no retries).
func (s *Server) NewClient(t testing.TB, creds *credentials.Credentials) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: creds, Region: "us-east-1", BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Env is the environment that gives a push the root user's keys.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret}
}

// Setenv gives the test's pushes (in this process and in the commands it
// runs) the root user's keys through the environment, as users do, and
// hides any real AWS configuration of the machine.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

// URL is the s3:// URL of bucket as Nix writes it for this server.
func (s *Server) URL(bucket string) string {
	return "s3://" + bucket + "?endpoint=http://" + s.Endpoint + "&region=us-east-1"
}

// HTTPURL is the plain HTTP URL of bucket (path-style).
func (s *Server) HTTPURL(bucket string) string { return "http://" + s.Endpoint + "/" + bucket }

// Access levels of MakeBucket.
const (
	Private         = ""
	PublicRead      = "read"
	PublicReadWrite = "readwrite"
)

// MakeBucket creates a bucket through the S3 API and gives it a bucket
// policy that lets anyone read it (PublicRead), or also write it
// (PublicReadWrite).
func (s *Server) MakeBucket(t testing.TB, name, access string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	if access == Private {
		return
	}
	actions := []string{`"s3:GetObject"`, `"s3:GetBucketLocation"`, `"s3:ListBucket"`}
	if access == PublicReadWrite {
		actions = append(actions, `"s3:PutObject"`, `"s3:AbortMultipartUpload"`, `"s3:ListBucketMultipartUploads"`, `"s3:ListMultipartUploadParts"`)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":[%s],`+
		`"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, strings.Join(actions, ","), name, name)
	if err := s.Client.SetBucketPolicy(ctx, name, policy); err != nil {
		t.Fatalf("set the policy of bucket %s: %v", name, err)
	}
}

// Objects lists the bucket: key to object.
func (s *Server) Objects(t testing.TB, bucket string) map[string]minio.ObjectInfo {
	t.Helper()
	objs := map[string]minio.ObjectInfo{}
	for o := range s.Client.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list bucket %s: %v", bucket, o.Err)
		}
		objs[o.Key] = o
	}
	return objs
}

// CacheSpec describes a cache MakeCache writes.
type CacheSpec struct {
	// Paths is the number of store paths: path i references path i-1
	// (and i-3), so the narinfos form several layers.
	Paths int
	// Big is the NAR size of path 0's file, random bytes (incompressible).
	Big int
	// Seed varies the contents, so that two caches differ.
	Seed int64
}

// MakeCache writes a cache of a fake store (compression none, with NAR
// listings and a debuginfo entry) and returns its directory and the
// store paths.
func MakeCache(t testing.TB, spec CacheSpec) (string, []string) {
	t.Helper()
	s := testkit.NewStore(t)
	rnd := rand.New(rand.NewSource(spec.Seed))
	var tp []testkit.Path
	for i := range spec.Paths {
		size := 1024 + rnd.Intn(3000)
		if i == 0 {
			size = spec.Big
		}
		data := make([]byte, size)
		rnd.Read(data)
		p := testkit.Path{Name: name(spec, i), Files: map[string]string{"data": string(data)}}
		if i == 1 {
			p.Files["lib/debug/.build-id/ab/"+strings.Repeat("c", 38)+".debug"] = "debug"
		}
		for _, j := range []int{i - 1, i - 3} {
			if j >= 0 {
				p.Refs = append(p.Refs, name(spec, j))
			}
		}
		tp = append(tp, p)
	}
	c := s.Add(t, tp...)
	dir := filepath.Join(t.TempDir(), "cache")
	o := s.Options(compress.None)
	o.NarListing, o.IndexDebugInfo, o.LockWait = true, true, -1
	testkit.WriteCache(t, dir, c, o)
	var paths []string
	for _, p := range c {
		paths = append(paths, p.StorePath)
	}
	return dir, paths
}

// name is the name of path i of the cache of spec.
func name(spec CacheSpec, i int) string { return fmt.Sprintf("p%d", i+int(spec.Seed)*1000) }

// Get returns an object's content.
func (s *Server) Get(t testing.TB, bucket, key string) []byte {
	t.Helper()
	obj, err := s.Client.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return data
}

// Problems lists what makes the bucket (under prefix) an inconsistent
// cache: a narinfo whose NAR is missing or of another size, or one of
// whose references has no narinfo.
func (s *Server) Problems(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	objs := s.Objects(t, bucket)
	var problems []string
	for key := range objs {
		name, ok := strings.CutPrefix(key, prefix)
		if !ok || strings.Contains(name, "/") || !strings.HasSuffix(name, ".narinfo") {
			continue
		}
		ni, _, err := narinfo.Parse(s.Get(t, bucket, key))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		if nar, ok := objs[prefix+ni.URL]; !ok {
			problems = append(problems, fmt.Sprintf("%s: its NAR %s is missing", key, ni.URL))
		} else if uint64(nar.Size) != ni.FileSize {
			problems = append(problems, fmt.Sprintf("%s: its NAR %s has %d bytes, not %d", key, ni.URL, nar.Size, ni.FileSize))
		}
		for _, r := range ni.References {
			if _, ok := objs[prefix+narinfo.HashPart(r)+".narinfo"]; !ok {
				problems = append(problems, fmt.Sprintf("%s: the narinfo of its reference %s is missing", key, r))
			}
		}
	}
	sort.Strings(problems)
	return problems
}
