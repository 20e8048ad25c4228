package nardump_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mkbinarycache/mkbinarycache/builder/nardump"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// NAR edge cases (issue 8): Dump must be byte-identical to
// `nix-store --dump` on each. Both outputs are streamed into sha256, so the
// 1 GiB sparse file is never held; small trees are compared byte for byte
// to show where they differ.

type sum struct {
	hash string
	n    int64
}

type hashWriter struct {
	h    io.Writer
	n    int64
	keep *bytes.Buffer // nil: do not keep the bytes
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.keep != nil && w.keep.Len() < 1<<20 {
		w.keep.Write(p)
	}
	return w.h.Write(p)
}

func dumpGo(t *testing.T, p string, keep *bytes.Buffer) sum {
	t.Helper()
	h := sha256.New()
	w := &hashWriter{h: h, keep: keep}
	if err := nardump.Dump(w, p); err != nil {
		t.Fatalf("nardump.Dump: %v", err)
	}
	return sum{hex.EncodeToString(h.Sum(nil)), w.n}
}

func dumpNix(t *testing.T, p string, keep *bytes.Buffer) sum {
	t.Helper()
	h := sha256.New()
	w := &hashWriter{h: h, keep: keep}
	cmd := exec.Command("nix-store", "--dump", p)
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nix-store --dump %s: %v\n%s", p, err, stderr.String())
	}
	return sum{hex.EncodeToString(h.Sum(nil)), w.n}
}

func compare(t *testing.T, p string) {
	t.Helper()
	var goBytes, nixBytes bytes.Buffer
	start := time.Now()
	g := dumpGo(t, p, &goBytes)
	goTime := time.Since(start)
	start = time.Now()
	n := dumpNix(t, p, &nixBytes)
	nixTime := time.Since(start)
	t.Logf("%d bytes of NAR; nardump %v, nix-store --dump %v", g.n, goTime.Round(time.Millisecond), nixTime.Round(time.Millisecond))
	if g != n {
		i := 0
		for i < goBytes.Len() && i < nixBytes.Len() && goBytes.Bytes()[i] == nixBytes.Bytes()[i] {
			i++
		}
		t.Errorf("NARs differ: nardump %d bytes sha256 %s, nix-store %d bytes sha256 %s; first difference at byte %d:\nnardump:   %q\nnix-store: %q",
			g.n, g.hash, n.n, n.hash, i, around(goBytes.Bytes(), i), around(nixBytes.Bytes(), i))
	}
}

func around(b []byte, i int) []byte {
	lo, hi := max(i-32, 0), min(i+32, len(b))
	if lo > hi {
		return nil
	}
	return b[lo:hi]
}

func TestEdgeCasesAgainstNix(t *testing.T) {
	nixtest.Require(t)
	type tc struct {
		name string
		make func(t *testing.T, root string) string // returns the path to dump
	}
	file := func(p string, data string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode is masked by the umask.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	cases := []tc{
		{"empty file", func(t *testing.T, r string) string {
			file(r+"/f", "", 0o644)
			return r + "/f"
		}},
		{"empty file in a dir", func(t *testing.T, r string) string {
			file(r+"/d/f", "", 0o644)
			return r + "/d"
		}},
		{"empty dir", func(t *testing.T, r string) string {
			must(t, os.Mkdir(r+"/d", 0o755))
			return r + "/d"
		}},
		{"empty dirs nested", func(t *testing.T, r string) string {
			must(t, os.MkdirAll(r+"/d/a/b/c", 0o755))
			must(t, os.MkdirAll(r+"/d/e", 0o700))
			return r + "/d"
		}},
		{"100 levels deep", func(t *testing.T, r string) string {
			p := r + "/d"
			for i := 0; i < 100; i++ {
				p += "/l"
			}
			file(p+"/leaf", "deep\n", 0o644)
			return r + "/d"
		}},
		{"255-byte names", func(t *testing.T, r string) string {
			long := strings.Repeat("n", 255)
			file(r+"/d/"+long, "long\n", 0o644)
			file(r+"/d/"+strings.Repeat("m", 254)+"/"+long, "x", 0o644)
			must(t, os.Symlink(strings.Repeat("../", 300)+long, r+"/d/s"))
			return r + "/d"
		}},
		{"non-UTF-8 names", func(t *testing.T, r string) string {
			file(r+"/d/\xff\xfe", "latin\n", 0o644)
			file(r+"/d/caf\xe9", "e\n", 0o644)
			file(r+"/d/\x01\x7f", "ctl\n", 0o644)
			file(r+"/d/new\nline", "nl\n", 0o644)
			must(t, os.Symlink("\xff\xfe", r+"/d/link"))
			return r + "/d"
		}},
		{"name order", func(t *testing.T, r string) string {
			for _, n := range []string{"a", "B", "a.b", "a-b", "a b", "ab", "_", "Z", "\xc3\xa9", "0", "~"} {
				file(r+"/d/"+n, n, 0o644)
			}
			return r + "/d"
		}},
		{"symlink to nowhere", func(t *testing.T, r string) string {
			must(t, os.Mkdir(r+"/d", 0o755))
			must(t, os.Symlink("/nonexistent/target", r+"/d/dangling"))
			must(t, os.Symlink("missing", r+"/d/relative"))
			must(t, os.Symlink("loop", r+"/d/loop"))
			return r + "/d"
		}},
		{"top-level dangling symlink", func(t *testing.T, r string) string {
			must(t, os.Symlink("/nonexistent", r+"/s"))
			return r + "/s"
		}},
		{"executable bits", func(t *testing.T, r string) string {
			file(r+"/d/rwx", "#!/bin/sh\n", 0o755)
			file(r+"/d/user-x", "u\n", 0o700)
			file(r+"/d/group-x-only", "g\n", 0o654)
			file(r+"/d/other-x-only", "o\n", 0o645)
			file(r+"/d/setuid", "s\n", 0o4755)
			file(r+"/d/readonly", "r\n", 0o444)
			file(r+"/d/exec-empty", "", 0o755)
			return r + "/d"
		}},
		{"hard links", func(t *testing.T, r string) string {
			file(r+"/d/a", "shared\n", 0o644)
			must(t, os.Link(r+"/d/a", r+"/d/b"))
			must(t, os.MkdirAll(r+"/d/sub", 0o755))
			must(t, os.Link(r+"/d/a", r+"/d/sub/c"))
			return r + "/d"
		}},
		{"file size multiple of 8 and not", func(t *testing.T, r string) string {
			for i := 0; i <= 17; i++ {
				file(filepath.Join(r, "d", strings.Repeat("x", i+1)), strings.Repeat("y", i), 0o644)
			}
			return r + "/d"
		}},
		{"1 GiB sparse file", func(t *testing.T, r string) string {
			if testing.Short() {
				t.Skip("-short")
			}
			file(r+"/d/head", "h", 0o644)
			f, err := os.Create(r + "/d/sparse")
			must(t, err)
			must(t, f.Truncate(1<<30))
			_, err = f.WriteAt([]byte("end"), 1<<30-3)
			must(t, err)
			must(t, f.Close())
			return r + "/d"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			compare(t, c.make(t, t.TempDir()))
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
