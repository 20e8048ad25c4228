package testkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

// Options are the writer's options for a cache of s, compressed with m at
// its default level.
func (s *Store) Options(m compress.Method) cache.Options {
	return cache.Options{StoreDir: s.Dir, Compression: m}
}

// WriteCache writes c into the cache at dir with the real writer.
func WriteCache(t testing.TB, dir string, c closure.Closure, o cache.Options) cache.Stats {
	t.Helper()
	w, err := cache.NewWriter(dir, o)
	Must(t, err)
	st, err := w.Write(context.Background(), c, nil)
	Must(t, err)
	return st
}

// NarInfos parses every narinfo of the cache at dir, by store path.
func NarInfos(t testing.TB, dir string) map[string]*narinfo.NarInfo {
	t.Helper()
	d, err := cachedir.Open(dir)
	Must(t, err)
	defer d.Close()
	files, invalid, err := d.NarInfos()
	Must(t, err)
	Must(t, errors.Join(invalid...))
	m := map[string]*narinfo.NarInfo{}
	for _, f := range files {
		data, err := d.ReadFile(f)
		Must(t, err)
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m[ni.StorePath] = ni
	}
	return m
}

// Problems runs verify on the cache o names and returns every problem it
// reports, "file: message" with the file relative to the cache, sorted.
func Problems(t testing.TB, o verify.Options) []string {
	t.Helper()
	var got []string
	_, err := verify.Cache(context.Background(), o, func(p verify.Problem) {
		rel, err := filepath.Rel(o.Dir, p.File)
		if err != nil || rel == "" || strings.HasPrefix(rel, "..") {
			rel = p.File
		}
		got = append(got, rel+": "+p.Msg)
	})
	if err != nil {
		t.Fatalf("verify %s: %v", o.Dir, err)
	}
	sort.Strings(got)
	return got
}

// TempFiles lists the temporary files anywhere in dir.
func TempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), cachedir.TmpPrefix) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// CheckCache fails t unless the cache at dir is whole: verify, with nothing
// filtered, finds no problem (every narinfo's NAR, references and listing
// are there, references served by one of the upstream caches, signed by
// TestPublic, aside), and no temporary file is left. Where no writer got
// as far as nix-cache-info, there must be no narinfo either.
func CheckCache(t testing.TB, dir string, upstreams ...string) {
	t.Helper()
	checkPublished(t, dir, upstreams...)
	if tmps := TempFiles(t, dir); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %q", tmps)
	}
}

// CheckKilledCache is CheckCache for a cache whose writer was killed: its
// temporary files may remain, for the next run to remove. It returns them.
func CheckKilledCache(t testing.TB, dir string, upstreams ...string) []string {
	t.Helper()
	checkPublished(t, dir, upstreams...)
	return TempFiles(t, dir)
}

func checkPublished(t testing.TB, dir string, upstreams ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, cachedir.InfoFile)); err != nil {
		files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
		if len(files) > 0 {
			t.Errorf("narinfos without %s: %q", cachedir.InfoFile, files)
		}
		return
	}
	if p := Problems(t, verify.Options{Dir: dir, Served: Served(t, dir, upstreams...)}); len(p) > 0 {
		t.Errorf("verify %s:\n%s", dir, strings.Join(p, "\n"))
	}
}

// CheckNAR checks the file behind a narinfo of the cache at dir: its name,
// FileHash and FileSize, that it is compressed with m, and that it
// decompresses to nar.
func CheckNAR(t testing.TB, dir string, ni *narinfo.NarInfo, m compress.Method, nar []byte) {
	t.Helper()
	file, err := os.ReadFile(filepath.Join(dir, ni.URL))
	Must(t, err)
	sum := sha256.Sum256(file)
	fh := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum[:], nixhash.NixBase32, true)
	if ni.FileHash == nil || ni.FileHash.String() != fh.String() || ni.FileSize != uint64(len(file)) {
		t.Errorf("%s: FileHash %v FileSize %d, the file has %s %d", ni.StorePath, ni.FileHash, ni.FileSize, fh, len(file))
	}
	if ni.Compression != string(m) || ni.URL != "nar/"+fh.Format(nixhash.NixBase32, false)+".nar"+m.Ext() {
		t.Errorf("%s: Compression %s URL %s for %s", ni.StorePath, ni.Compression, ni.URL, m)
	}
	r, err := compress.NewReader(bytes.NewReader(file), m)
	Must(t, err)
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: decompress %s: %v", ni.StorePath, ni.URL, err)
	}
	if !bytes.Equal(got, nar) {
		t.Errorf("%s: %s does not decompress to the NAR of the path", ni.StorePath, ni.URL)
	}
}

// Recorder is a testing.TB that records what a check reports through
// Errorf instead of failing the test: for the tests of checks.
type Recorder struct {
	testing.TB
	Errors []string
}

// Errorf records the error.
func (r *Recorder) Errorf(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// Files is Tree restricted to the regular files under dir, temporary
// files included.
func Files(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := Tree(t, dir)
	for rel, v := range m {
		if !strings.HasPrefix(v, "-") { // not a regular file's mode
			delete(m, rel)
		}
	}
	return m
}

// Tree is a snapshot of everything under dir, for byte-identical
// comparisons: relative name -> kind and mode, a symlink's target, a
// regular file's contents (small text files as they are, so that a diff
// shows the lines; others by SHA-256 and size).
func Tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	Must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			m[rel] = info.Mode().String()
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "symlink -> " + target
		case !d.Type().IsRegular():
			m[rel] = info.Mode().String() // a FIFO would block a read
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(data) <= 4096 && utf8.Valid(data) {
				m[rel] = info.Mode().String() + "\n" + string(data)
			} else {
				sum := sha256.Sum256(data)
				m[rel] = info.Mode().String() + " sha256:" + hex.EncodeToString(sum[:]) + " " + strconv.Itoa(len(data)) + " bytes"
			}
		}
		return nil
	}))
	return m
}

// OpenCache opens the cache directory dir, closed when t ends.
func OpenCache(t testing.TB, dir string) *cachedir.Dir {
	t.Helper()
	d, err := cachedir.Open(dir)
	Must(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// InitCache creates the cache dir with info, as a writer does.
func InitCache(t testing.TB, dir string, info cachedir.Info) *cachedir.Dir {
	t.Helper()
	d, err := cachedir.Ensure(dir)
	Must(t, err)
	t.Cleanup(func() { d.Close() })
	Must(t, d.Init(info))
	return d
}
