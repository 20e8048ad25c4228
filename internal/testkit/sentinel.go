package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SentinelMark starts the content of every sentinel file: no output or
// error of a command may carry it.
const SentinelMark = "SENTINEL-d41c7e"

// Outside is a directory outside any cache holding sentinel files, for
// hostile caches whose symlinks point there: when the test ends, each file
// must still hold what it held, and no file may have been added.
type Outside struct {
	Dir  string
	want map[string]string
}

// NewOutside makes an Outside with one sentinel file per name.
func NewOutside(t testing.TB, names ...string) *Outside {
	t.Helper()
	o := &Outside{Dir: t.TempDir(), want: map[string]string{}}
	for _, n := range names {
		o.want[n] = SentinelMark + "-" + n + "\n"
		Must(t, os.WriteFile(filepath.Join(o.Dir, n), []byte(o.want[n]), 0o600))
	}
	t.Cleanup(func() { o.Check(t) })
	return o
}

// Path is the sentinel file name.
func (o *Outside) Path(name string) string { return filepath.Join(o.Dir, name) }

// Check fails unless every sentinel file is as it was, and nothing else
// appeared beside them.
func (o *Outside) Check(t testing.TB) {
	t.Helper()
	got := map[string]string{}
	ents, err := os.ReadDir(o.Dir)
	Must(t, err)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(o.Dir, e.Name()))
		if err != nil {
			t.Errorf("outside the cache: %v", err)
		}
		got[e.Name()] = string(data)
	}
	for n, w := range o.want {
		if got[n] != w {
			t.Errorf("sentinel %s outside the cache changed or removed: %q", n, got[n])
		}
		delete(got, n)
	}
	for n := range got {
		t.Errorf("%s was created outside the cache", n)
	}
}

// NoSentinel fails if s (output, an error) carries a sentinel's content.
func NoSentinel(t testing.TB, s string) {
	t.Helper()
	if strings.Contains(s, SentinelMark) {
		t.Errorf("a file's content leaked into: %s", s)
	}
}
