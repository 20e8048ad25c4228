package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// The hash parts of the two paths of fakeCache.
var (
	libHash = testkit.HashPartOfName("lib")
	appHash = testkit.HashPartOfName("app")
)

// fakeCache writes a cache of two paths of a store in a temp dir: app
// refers to lib. It returns the cache dir and the store dir.
func fakeCache(t *testing.T, m compress.Method) (string, string) {
	t.Helper()
	s := testkit.NewStore(t)
	c := s.Add(t, testkit.Path{Name: "app", Files: map[string]string{"bin/app": "#!/bin/sh\nexec " + s.Path("lib") + "/lib/libx.so\n"},
		Refs: []string{"app", "lib"}},
		testkit.Path{Name: "lib", Files: map[string]string{"lib/libx.so": strings.Repeat("library ", 5000), "share/readme": "read me\n"}})
	dir := filepath.Join(t.TempDir(), "cache")
	o := s.Options(m)
	o.Jobs = 2
	testkit.WriteCache(t, dir, c, o)
	return dir, s.Dir
}

func narInfoFile(dir, hash string) string { return filepath.Join(dir, hash+".narinfo") }

func readNarInfo(t *testing.T, dir, hash string) string {
	t.Helper()
	b, err := os.ReadFile(narInfoFile(dir, hash))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func field(narinfo, key string) string {
	for _, l := range strings.Split(narinfo, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return v
		}
	}
	return ""
}

func edit(t *testing.T, dir, hash string, f func(string) string) {
	t.Helper()
	if err := os.WriteFile(narInfoFile(dir, hash), []byte(f(readNarInfo(t, dir, hash))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGoodCaches(t *testing.T) {
	for _, m := range compress.Methods {
		t.Run(string(m), func(t *testing.T) {
			dir, _ := fakeCache(t, m)
			if got := testkit.Problems(t, verify.Options{Dir: dir}); len(got) != 0 {
				t.Errorf("problems in a good cache:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m      compress.Method
		break_ func(t *testing.T, dir string)
		want   []string
	}{{
		name: "missing NAR",
		m:    compress.Zstd,
		break_: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, field(readNarInfo(t, dir, libHash), "URL")))
		},
		want: []string{libHash + ".narinfo: NAR nar/*.nar.zst is missing"},
	}, {
		name: "corrupt compressed NAR",
		m:    compress.Zstd,
		break_: func(t *testing.T, dir string) {
			f := filepath.Join(dir, field(readNarInfo(t, dir, libHash), "URL"))
			b, _ := os.ReadFile(f)
			b[len(b)/2] ^= 0xff
			os.WriteFile(f, b, 0o644)
		},
		want: []string{
			libHash + ".narinfo: NAR nar/*.nar.zst: FileHash is sha256:*, the file hashes to sha256:*",
			libHash + ".narinfo: NAR nar/*.nar.zst: does not decompress as zstd: *",
		},
	}, {
		name: "wrong sizes",
		m:    compress.XZ,
		break_: func(t *testing.T, dir string) {
			edit(t, dir, appHash, func(s string) string {
				s = strings.Replace(s, "NarSize: ", "NarSize: 1", 1)
				return strings.Replace(s, "FileSize: ", "FileSize: 9", 1)
			})
		},
		want: []string{
			appHash + ".narinfo: NAR nar/*.nar.xz: FileSize is 9*, the file has * bytes",
			appHash + ".narinfo: NAR nar/*.nar.xz: NarSize is 1*, the NAR has * bytes",
		},
	}, {
		name: "wrong NarHash",
		m:    compress.XZ,
		break_: func(t *testing.T, dir string) {
			edit(t, dir, appHash, func(s string) string {
				h := field(s, "NarHash")
				last := "0"
				if strings.HasSuffix(h, "0") {
					last = "1"
				}
				return strings.Replace(s, h, h[:len(h)-1]+last, 1)
			})
		},
		want: []string{appHash + ".narinfo: NAR nar/*.nar.xz: NarHash is sha256:*, the NAR hashes to sha256:*"},
	}, {
		name: "dangling reference",
		m:    compress.None,
		break_: func(t *testing.T, dir string) {
			os.Remove(narInfoFile(dir, libHash))
		},
		want: []string{appHash + ".narinfo: reference " + libHash + "-lib has no narinfo in the cache"},
	}, {
		name: "garbage and misplaced narinfos",
		m:    compress.None,
		break_: func(t *testing.T, dir string) {
			os.WriteFile(narInfoFile(dir, "33333333333333333333333333333333"), []byte("garbage\n"), 0o644)
			os.WriteFile(narInfoFile(dir, "44444444444444444444444444444444"), []byte(readNarInfo(t, dir, libHash)), 0o644)
		},
		want: []string{
			"33333333333333333333333333333333.narinfo: Nix refuses it: *",
			"44444444444444444444444444444444.narinfo: StorePath */" + libHash + "-lib does not belong to this narinfo file (hash part 44444444444444444444444444444444)",
		},
	}, {
		name: "missing fields",
		m:    compress.None,
		break_: func(t *testing.T, dir string) {
			edit(t, dir, libHash, func(s string) string {
				var keep []string
				for _, l := range strings.Split(s, "\n") {
					if !strings.HasPrefix(l, "NarSize") && !strings.HasPrefix(l, "FileHash") && !strings.HasPrefix(l, "URL") {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			})
		},
		want: []string{libHash + ".narinfo: Nix refuses it: no URL"},
	}, {
		name: "no nix-cache-info, URL outside",
		m:    compress.None,
		break_: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "nix-cache-info"))
			edit(t, dir, libHash, func(s string) string {
				return strings.Replace(s, "URL: nar/", "URL: ../nar/", 1)
			})
		},
		want: []string{
			libHash + ".narinfo: StorePath * is not in the store directory /nix/store",
			appHash + ".narinfo: StorePath * is not in the store directory /nix/store",
			libHash + `.narinfo: URL "../nar/*.nar" does not name a NAR directly under nar/`,
			"nix-cache-info: missing, or without StoreDir (Nix needs it to use the cache)",
		},
	}, {
		// A NAR truncated, with a narinfo that agrees: only the NAR parser
		// can tell.
		name: "truncated NAR, consistent narinfo",
		m:    compress.None,
		break_: func(t *testing.T, dir string) {
			ni := readNarInfo(t, dir, libHash)
			f := filepath.Join(dir, field(ni, "URL"))
			b, _ := os.ReadFile(f)
			b = b[:len(b)-16] // the root's closing token
			os.WriteFile(f, b, 0o644)
			sum := sha256.Sum256(b)
			h := nixhash.MustNewHash(nixhash.SHA256, sum[:]).Format(nixhash.NixBase32, true)
			edit(t, dir, libHash, func(s string) string {
				for _, k := range []string{"FileHash", "NarHash"} {
					s = strings.Replace(s, k+": "+field(ni, k), k+": "+h, 1)
				}
				for _, k := range []string{"FileSize", "NarSize"} {
					s = strings.Replace(s, k+": "+field(ni, k), k+": "+strconv.Itoa(len(b)), 1)
				}
				return s
			})
		},
		want: []string{libHash + ".narinfo: NAR nar/*.nar: not a well-formed NAR: read NAR: unexpected EOF"},
	}, {
		name: "unknown keys, bzip2 without Compression line",
		m:    compress.Bzip2,
		break_: func(t *testing.T, dir string) {
			edit(t, dir, libHash, func(s string) string {
				s = strings.Replace(s, "Compression: bzip2\n", "", 1)
				return s + "FutureField: whatever\nSig: other-1:AAAA\n"
			})
		},
		want: []string{libHash + `.narinfo: signature by other-1 is not an Ed25519 signature`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := fakeCache(t, tc.m)
			tc.break_(t, dir)
			got := testkit.Problems(t, verify.Options{Dir: dir})
			sort.Strings(tc.want)
			if !matchAll(tc.want, got) {
				t.Errorf("problems:\n%s\nwant (glob):\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestSignatures(t *testing.T) {
	dir, store := fakeCache(t, compress.Zstd)
	sk, pk, _ := signature.GenerateKeypair("test-1", nil)
	_, other, _ := signature.GenerateKeypair("other-1", nil)
	if got := testkit.Problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{pk}}); !matchAll([]string{
		appHash + ".narinfo: not signed", libHash + ".narinfo: not signed",
	}, got) {
		t.Errorf("unsigned: %q", got)
	}
	if _, err := sign.SignDir(context.Background(), sk, sign.DirOptions{Dir: dir}, nil); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{other, pk}}); len(got) != 0 {
		t.Errorf("signed cache: %q", got)
	}
	if got := testkit.Problems(t, verify.Options{Dir: dir, StoreDir: store, PublicKeys: []signature.PublicKey{other}}); !matchAll([]string{
		appHash + ".narinfo: no signature by a given key (signed only by test-1)",
		libHash + ".narinfo: no signature by a given key (signed only by test-1)",
	}, got) {
		t.Errorf("other key: %q", got)
	}
	// Dropping a reference keeps the NAR valid but breaks the signature.
	edit(t, dir, appHash, func(s string) string {
		return strings.Replace(s, " "+libHash+"-lib", "", 1)
	})
	if got := testkit.Problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{pk}}); !matchAll([]string{
		appHash + ".narinfo: signature by test-1 does not verify (*)",
	}, got) {
		t.Errorf("tampered: %q", got)
	}
	if _, err := verify.Cache(context.Background(), verify.Options{Dir: dir, StoreDir: "/nix/store"}, func(verify.Problem) {}); err == nil {
		t.Errorf("a store dir contradicting nix-cache-info was accepted")
	}
}

func TestListingsAndDebugInfo(t *testing.T) {
	dir, store := fakeCache(t, compress.Zstd)
	root, err := listing.Read(bytes.NewReader(testkit.Nardump(t, filepath.Join(store, libHash+"-lib"))))
	if err != nil {
		t.Fatal(err)
	}
	good := listing.JSON(root)
	os.WriteFile(filepath.Join(dir, libHash+".ls"), good, 0o644)
	// Same JSON value, other key order and spacing (newer Nix): accepted.
	os.WriteFile(filepath.Join(dir, appHash+".ls"), []byte(`{"root": {"entries": {"bin": {"entries": {"app": {"narOffset": 0, "size": 0, "type": "regular"}}, "type": "directory"}}, "type": "directory"}, "version": 1}`), 0o644)
	os.WriteFile(filepath.Join(dir, "debuginfo", "0123456789abcdef0123456789abcdef01234567.debug"),
		[]byte(`{"archive":"../nar/nothere.nar.zst","member":"lib/debug/.build-id/01/23456789abcdef0123456789abcdef01234567.debug"}`), 0o644)
	got := testkit.Problems(t, verify.Options{Dir: dir})
	if !matchAll([]string{
		appHash + ".narinfo: listing " + appHash + ".ls does not match the NAR",
		"debuginfo/0123456789abcdef0123456789abcdef01234567.debug: archive ../nar/nothere.nar.zst is missing",
	}, got) {
		t.Errorf("problems: %q", got)
	}
}

func TestCancel(t *testing.T) {
	dir, _ := fakeCache(t, compress.Zstd)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := verify.Cache(ctx, verify.Options{Dir: dir}, func(p verify.Problem) { t.Errorf("problem reported after cancel: %v", p) }); err == nil {
		t.Errorf("no error after cancel")
	}
}

// matchAll reports whether got matches the glob patterns of want one to one
// (both sorted by the caller; patterns are matched in any order).
func matchAll(want, got []string) bool {
	if len(want) != len(got) {
		return false
	}
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && glob(w, g) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// glob matches s against a pattern where * is any run of characters.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return s == ""
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{{"a*c", "abc", true}, {"a*c", "abd", false}, {"abc", "abc", true}, {"a*", "a", true}, {"*b*", "abc", true}, {"a*b*c", "ac", false}} {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// Every entry a cache may not hold is a problem, named, never followed:
// no problem carries what a symlink points to.
func TestHostileEntries(t *testing.T) {
	dir, _ := fakeCache(t, compress.Zstd)
	o := testkit.NewOutside(t, "secret", "narinfo", "nar")
	// lib's NAR becomes a symlink to a sentinel; app's listing too.
	lib := testkit.NarInfos(t, dir)
	var libURL string
	for p, ni := range lib {
		if strings.HasSuffix(p, "-lib") {
			libURL = ni.URL
		}
	}
	testkit.Must(t, os.Remove(filepath.Join(dir, libURL)))
	testkit.Must(t, os.Symlink(o.Path("nar"), filepath.Join(dir, libURL)))
	testkit.Must(t, os.Symlink(o.Path("secret"), filepath.Join(dir, appHash+".ls")))
	testkit.Must(t, os.Symlink(o.Path("narinfo"), filepath.Join(dir, "11111111111111111111111111111111.narinfo")))
	testkit.Must(t, os.Symlink(o.Path("secret"), filepath.Join(dir, "debuginfo", "0123456789abcdef0123456789abcdef01234567.debug")))
	testkit.Must(t, os.WriteFile(filepath.Join(dir, "debuginfo", "1123456789abcdef0123456789abcdef01234567.debug"), []byte(testkit.SentinelMark), 0o644))
	testkit.Must(t, os.Remove(filepath.Join(dir, "log")))
	testkit.Must(t, os.Symlink(o.Dir, filepath.Join(dir, "log")))
	got := testkit.Problems(t, verify.Options{Dir: dir})
	for _, p := range got {
		testkit.NoSentinel(t, p)
	}
	if !matchAll([]string{
		"11111111111111111111111111111111.narinfo: a symbolic link (not followed)",
		appHash + ".narinfo: listing " + appHash + ".ls: */" + appHash + ".ls: a symbolic link (not followed)",
		libHash + ".narinfo: NAR " + libURL + ": */" + libURL + ": a symbolic link (not followed)",
		"debuginfo/0123456789abcdef0123456789abcdef01234567.debug: a symbolic link (not followed)",
		"debuginfo/1123456789abcdef0123456789abcdef01234567.debug: not a debuginfo entry *",
		"log: a symbolic link where a directory must be (not followed)",
	}, got) {
		t.Errorf("problems: %q", got)
	}
}

// verify holds the read-only lock: it waits for a gc rather than report
// what the gc is removing.
func TestWaitsForGC(t *testing.T) {
	dir, _ := fakeCache(t, compress.Zstd)
	l, err := testkit.OpenCache(t, dir).Lock(context.Background(), cachedir.Exclusive, 0)
	testkit.Must(t, err)
	defer l.Release()
	if _, err := verify.Cache(context.Background(), verify.Options{Dir: dir, LockWait: 50 * time.Millisecond}, func(verify.Problem) {}); !errors.Is(err, cachedir.ErrBusy) {
		t.Errorf("verify beside a gc: %v, want ErrBusy", err)
	}
}
