package main_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"

	"github.com/mkbinarycache/mkbinarycache/builder/cli"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

// logCache writes a cache of app (Deriver app.drv), its derivation
// tool.drv and junk (Deriver junk.drv), with a build log for each
// derivation and one named after no derivation.
func logCache(t *testing.T) (dir string, s *testkit.Store, paths map[string]string) {
	s = testkit.NewStore(t)
	c := s.Add(t,
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app"}, Deriver: "app.drv"},
		testkit.Path{Name: "tool.drv", Files: map[string]string{"": "Derive([])"}},
		testkit.Path{Name: "junk", Files: map[string]string{"junk": "junk"}, Deriver: "junk.drv"},
	)
	dir = filepath.Join(t.TempDir(), "cache")
	testkit.WriteCache(t, dir, c, s.Options(compress.Zstd))
	paths = map[string]string{}
	for _, n := range []string{"app", "tool.drv", "junk", "app.drv", "junk.drv"} {
		paths[n] = s.Path(n)
	}
	for _, n := range []string{"app.drv", "tool.drv", "junk.drv"} {
		testkit.Must(t, os.WriteFile(filepath.Join(dir, "log", filepath.Base(s.Path(n))), []byte("building "+n+"\n"), 0o644))
	}
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "log", "notes.txt"), []byte("not a log"), 0o644))
	return dir, s, paths
}

func logNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "log"))
	testkit.Must(t, err)
	var out []string
	for _, e := range ents {
		_, name, _ := strings.Cut(e.Name(), "-") // without the hash
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func TestLogsVerifyGCCopy(t *testing.T) {
	dir, _, p := logCache(t)
	// verify: the log named after no derivation is a problem.
	code, stdout, _ := runMain("verify", dir)
	if code != cli.ExitFailure || !strings.Contains(stdout, "notes.txt") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("verify: exit %d, want one problem naming notes.txt:\n%s", code, stdout)
	}
	testkit.Must(t, os.Remove(filepath.Join(dir, "log", "notes.txt")))
	testkit.CheckCache(t, dir)

	// copy copies the logs of what it copies: app's deriver's, tool.drv's.
	dst := filepath.Join(t.TempDir(), "copy")
	if code, _, stderr := runMain("copy", "--from", dir, "--to", dst, p["app"], p["tool.drv"]); code != 0 {
		t.Fatalf("copy: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff([]string{"app.drv", "tool.drv"}, logNames(t, dst)); d != "" {
		t.Errorf("copied logs (-want +got):\n%s", d)
	}
	for _, n := range []string{"app.drv", "tool.drv"} {
		data, err := os.ReadFile(filepath.Join(dst, "log", filepath.Base(p[n])))
		if err != nil || string(data) != "building "+n+"\n" {
			t.Errorf("copied log of %s: %q %v", n, data, err)
		}
	}

	// gc: a log stays while its derivation or a kept path's Deriver does.
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "log", "notes.txt"), []byte("not a log"), 0o644))
	if code, _, stderr := runMain("gc", "--keep", p["app"], "--keep", p["tool.drv"], dir); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff([]string{"app.drv", "tool.drv"}, logNames(t, dir)); d != "" {
		t.Errorf("logs after gc (-want +got):\n%s", d)
	}
	if code, _, stderr := runMain("gc", "--keep", p["app"], dir); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff([]string{"app.drv"}, logNames(t, dir)); d != "" {
		t.Errorf("logs after the second gc (-want +got):\n%s", d)
	}
	testkit.CheckCache(t, dir)
}

// push uploads logs raw, with the Content-Type Nix's copy-log gives them.
func TestLogsPush(t *testing.T) {
	s := s3server.Start(t)
	s.Setenv(t)
	s.MakeBucket(t, "cache", s3server.Private)
	dir, _, p := logCache(t)
	push(t, dir, s.URL("cache"))
	key := "log/" + filepath.Base(p["app.drv"])
	obj, err := s.Client.GetObject(context.Background(), "cache", key, minio.GetObjectOptions{})
	testkit.Must(t, err)
	defer obj.Close()
	info, err := obj.Stat()
	testkit.Must(t, err)
	if info.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", key, info.ContentType)
	}
	if _, ok := s.Objects(t, "cache")["log/notes.txt"]; ok {
		t.Errorf("log/notes.txt, no derivation's log, was pushed")
	}
	if _, ok := s.Objects(t, "cache")["log/"+filepath.Base(p["junk.drv"])]; !ok {
		t.Errorf("junk.drv's log was not pushed")
	}
}
