package sign_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

func mustKey(t *testing.T) signature.SecretKey {
	t.Helper()
	k, err := signature.LoadSecretKey(testkit.TestSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignMatchesNix(t *testing.T) {
	key := mustKey(t)
	if got := key.ToPublicKey().String(); got != testkit.TestPublic {
		t.Fatalf("public key %q, want %q", got, testkit.TestPublic)
	}
	for _, tc := range []struct{ name, narinfo, sig string }{
		{"hello", testkit.HelloUnsigned, testkit.HelloSig},
		{"busybox (CA, no references)", testkit.BusyboxUnsigned, testkit.BusyboxSig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ni, _, err := narinfo.Parse([]byte(tc.narinfo))
			if err != nil {
				t.Fatal(err)
			}
			s, err := sign.Sign(ni, key, "/nix/store")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.sig, s.String()); d != "" {
				t.Errorf("signature differs from Nix's (-nix +ours):\n%s", d)
			}
			pub, err := sign.ParsePublicKey(testkit.TestPublic)
			if err != nil {
				t.Fatal(err)
			}
			ni.Signatures = append(ni.Signatures, s)
			valid, err := sign.Valid(ni, []signature.PublicKey{pub}, "/nix/store")
			if err != nil || len(valid) != 1 {
				t.Errorf("Valid = %v, %v; want our signature", valid, err)
			}
			ni.NarSize++
			if valid, _ := sign.Valid(ni, []signature.PublicKey{pub}, "/nix/store"); len(valid) != 0 {
				t.Errorf("signature still valid after NarSize changed")
			}
		})
	}
}

// fakeCache writes a zstd cache of two paths of a store of the test's own
// (app refers to lib), which no local Nix store has, and returns it with
// app's and lib's narinfo files and narinfos.
func fakeCache(t *testing.T) (dir string, files [2]string, nis [2]*narinfo.NarInfo) {
	t.Helper()
	s := testkit.NewStore(t)
	c := s.Add(t,
		testkit.Path{Name: "app", Files: map[string]string{"bin/app": "app\n"}, Refs: []string{"lib"}},
		testkit.Path{Name: "lib", Files: map[string]string{"lib/lib.so": strings.Repeat("lib\n", 1000)}})
	dir = filepath.Join(t.TempDir(), "cache")
	testkit.WriteCache(t, dir, c, s.Options(compress.Zstd))
	all := testkit.NarInfos(t, dir)
	for i, name := range []string{"app", "lib"} {
		files[i] = filepath.Join(dir, cachedir.NarInfoName(s.Path(name)))
		nis[i] = all[s.Path(name)]
	}
	return dir, files, nis
}

// edit rewrites the fields of the narinfo file f given in set ("" drops the
// field).
func edit(t *testing.T, f string, set map[string]string) {
	t.Helper()
	data, err := os.ReadFile(f)
	testkit.Must(t, err)
	var out []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		k, _, _ := strings.Cut(line, ": ")
		if v, ok := set[k]; ok {
			if v != "" {
				out = append(out, k+": "+v+"\n")
			}
			continue
		}
		out = append(out, line)
	}
	testkit.Must(t, os.WriteFile(f, []byte(strings.Join(out, "")), 0o644))
}

func readFile(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	testkit.Must(t, err)
	return string(b)
}

func TestSignDir(t *testing.T) {
	key := mustKey(t)
	pub := key.ToPublicKey()
	dir, _, _ := fakeCache(t)
	before := testkit.Files(t, dir)
	var reported []string
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir}, func(file string, out sign.Outcome, err error) {
		reported = append(reported, filepath.Base(file))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody's store has these paths: signed on the cache's word.
	if d := cmp.Diff(sign.DirStats{Files: 2, Added: 2, CacheOnly: 2}, stats); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if len(reported) != 2 {
		t.Errorf("reported %q, want both narinfos", reported)
	}
	if p := testkit.Problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{pub}}); len(p) > 0 {
		t.Errorf("verify with the key: %q", p)
	}
	// Only the narinfos changed, and each only by its Sig line.
	after := testkit.Files(t, dir)
	for f, b := range before {
		a := after[f]
		if strings.HasSuffix(f, ".narinfo") {
			if !strings.HasPrefix(a, b) || !strings.HasPrefix(a[len(b):], "Sig: "+pub.Name+":") || strings.Count(a[len(b):], "\n") != 1 {
				t.Errorf("%s: signed as %q, was %q", f, a, b)
			}
		} else if a != b {
			t.Errorf("%s changed", f)
		}
	}
	if len(after) != len(before) {
		t.Errorf("files %d, were %d", len(after), len(before))
	}

	if _, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, StoreDir: filepath.Dir(dir) + "/../store"}, nil); err == nil {
		t.Errorf("a --store-dir contradicting nix-cache-info was accepted")
	}
	// Idempotent: a second run changes nothing.
	stats, err = sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sign.DirStats{Files: 2, Present: 2}, stats); d != "" {
		t.Errorf("second run stats (-want +got):\n%s", d)
	}
	if d := cmp.Diff(after, testkit.Files(t, dir)); d != "" {
		t.Errorf("the second run changed the cache (-before +after):\n%s", d)
	}
}

// A signature by the key's name that no longer verifies is refused, the
// narinfo left as it is, unless ReplaceInvalid says to replace it.
func TestSignDirInvalidSignature(t *testing.T) {
	key := mustKey(t)
	dir, files, _ := fakeCache(t)
	if _, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir}, nil); err != nil {
		t.Fatal(err)
	}
	// app's Sig line by lib's: the key's name, another fingerprint.
	libSig := strings.TrimPrefix(sigLine(t, readFile(t, files[1])), "Sig: ")
	edit(t, files[0], map[string]string{"Sig": libSig})
	stale := readFile(t, files[0])
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir}, nil)
	if !errors.Is(err, sign.ErrInvalidSignature) || !strings.Contains(err.Error(), files[0]) {
		t.Errorf("err = %v, want ErrInvalidSignature naming %s", err, files[0])
	}
	if d := cmp.Diff(sign.DirStats{Files: 2, Present: 1, Failed: 1}, stats); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if got := readFile(t, files[0]); got != stale {
		t.Errorf("the refused narinfo changed:\n%s", got)
	}
	stats, err = sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, ReplaceInvalid: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sign.DirStats{Files: 2, Present: 1, Replaced: 1, CacheOnly: 1}, stats); d != "" {
		t.Errorf("stats with ReplaceInvalid (-want +got):\n%s", d)
	}
	if p := testkit.Problems(t, verify.Options{Dir: dir, PublicKeys: []signature.PublicKey{key.ToPublicKey()}}); len(p) > 0 {
		t.Errorf("verify after the replacement: %q", p)
	}
	if n := strings.Count(readFile(t, files[0]), "Sig: "); n != 1 {
		t.Errorf("%d Sig lines after the replacement, want 1", n)
	}
}

func sigLine(t *testing.T, narinfo string) string {
	t.Helper()
	for _, l := range strings.Split(narinfo, "\n") {
		if strings.HasPrefix(l, "Sig: ") {
			return l
		}
	}
	t.Fatalf("no Sig line in %q", narinfo)
	return ""
}

// A narinfo whose NAR is not what it says, or that a local store
// contradicts, is refused and left as it is; the others are signed.
func TestSignDirRefusesWhatDoesNotCheck(t *testing.T) {
	key := mustKey(t)
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	contradicts := "valid in the local store, which the narinfo contradicts: "
	for _, tc := range []struct {
		name string
		// set gives the fields of app's narinfo to rewrite.
		set func(app, lib *narinfo.NarInfo) map[string]string
		// nar changes app's NAR file.
		nar func(t *testing.T, file string, app *narinfo.NarInfo)
		// local, if not nil, changes the local store's record of app.
		local func(p *closure.Path, lib *narinfo.NarInfo)
		want  string
	}{
		{name: "another path's NAR", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"URL": lib.URL, "FileHash": lib.FileHash.String(), "FileSize": u(lib.FileSize)}
		}, want: "does not match the narinfo: NarSize is"},
		{name: "another path's NarHash", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"NarHash": lib.NarHash.String()}
		}, want: "NarHash is"},
		{name: "NarSize one more", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"NarSize": u(app.NarSize + 1)}
		}, want: "NarSize is"},
		{name: "NarSize one less", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"NarSize": u(app.NarSize - 1)}
		}, want: "NarSize is"},
		{name: "FileHash", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"FileHash": lib.FileHash.String()}
		}, want: "FileHash is"},
		{name: "FileSize", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"FileSize": u(app.FileSize + 1)}
		}, want: "FileSize is"},
		{name: "Compression", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"Compression": "xz"}
		}, want: "does not decompress as xz"},
		{name: "URL outside nar/", set: func(app, lib *narinfo.NarInfo) map[string]string {
			return map[string]string{"URL": "../cache/" + app.URL}
		}, want: "does not name a NAR directly under nar/"},
		{name: "NAR missing", nar: func(t *testing.T, file string, app *narinfo.NarInfo) {
			testkit.Must(t, os.Remove(file))
		}, want: "no such file"},
		{name: "NAR truncated", nar: func(t *testing.T, file string, app *narinfo.NarInfo) {
			testkit.Must(t, os.Truncate(file, int64(app.FileSize/2)))
		}, want: "does not decompress"},
		{name: "the local store's NarHash differs", local: func(p *closure.Path, lib *narinfo.NarInfo) {
			p.NarHash = &lib.NarHash.Hash
		}, want: contradicts + "NarHash is"},
		{name: "the local store's NarSize differs", local: func(p *closure.Path, lib *narinfo.NarInfo) {
			p.NarSize++
		}, want: contradicts + "NarSize is"},
		{name: "the local store's References differ", local: func(p *closure.Path, lib *narinfo.NarInfo) {
			p.References = nil
		}, want: contradicts + "the narinfo's References are"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, files, nis := fakeCache(t)
			o := sign.DirOptions{Dir: dir}
			switch {
			case tc.set != nil:
				edit(t, files[0], tc.set(nis[0], nis[1]))
			case tc.nar != nil:
				tc.nar(t, filepath.Join(dir, nis[0].URL), nis[0])
			default:
				o.Local = localStore(nis[0], func(p *closure.Path) { tc.local(p, nis[1]) })
			}
			before := readFile(t, files[0])
			stats, err := sign.SignDir(context.Background(), key, o, nil)
			if err == nil || !strings.Contains(err.Error(), files[0]+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %s and saying %q", err, files[0], tc.want)
			}
			if stats.Added != 1 || stats.Failed != 1 {
				t.Errorf("stats = %+v, want lib signed and app refused", stats)
			}
			if got := readFile(t, files[0]); got != before {
				t.Errorf("the refused narinfo changed:\n%s", got)
			}
		})
	}
	// The local store agreeing: signed, and no warning due.
	dir, _, nis := fakeCache(t)
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, Local: localStore(nis[0], func(*closure.Path) {})}, nil)
	if err != nil || stats.Added != 2 || stats.CacheOnly != 1 {
		t.Errorf("app as the local store has it: %+v, %v; want both signed, only lib on the cache's word", stats, err)
	}
}

// localStore is a DirOptions.Local whose store has ni's path as ni
// describes it, then changed by tweak.
func localStore(ni *narinfo.NarInfo, tweak func(*closure.Path)) func(context.Context, []string) (closure.Closure, error) {
	return func(_ context.Context, paths []string) (closure.Closure, error) {
		dir := filepath.Dir(ni.StorePath)
		p := closure.Path{StorePath: ni.StorePath, NarHash: &ni.NarHash.Hash, NarSize: ni.NarSize}
		for _, r := range ni.References {
			p.References = append(p.References, dir+"/"+r)
		}
		tweak(&p)
		return closure.Closure{p}, nil
	}
}

func TestSignDirReportsEveryBadNarInfo(t *testing.T) {
	dir, _, _ := fakeCache(t)
	for name, data := range map[string]string{
		"aaaa.narinfo": "garbage\n",
		"bbbb.narinfo": "StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello\nURL: x\n", // no NarHash
	} {
		testkit.Must(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	stats, err := sign.SignDir(context.Background(), mustKey(t), sign.DirOptions{Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "aaaa.narinfo") || !strings.Contains(err.Error(), "bbbb.narinfo") {
		t.Errorf("err = %v, want both bad narinfos named", err)
	}
	if stats.Added != 2 || stats.Failed != 2 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestKeys(t *testing.T) {
	sec, pub, err := sign.GenerateKey("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "key.sec")
	os.WriteFile(f, []byte(sec+"\n"), 0o600)
	k, err := sign.LoadSecretKeyFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if k.ToPublicKey().String() != pub || sign.KeyName(k) != "cache.example.org-1" {
		t.Errorf("public key %q name %q, want %q", k.ToPublicKey(), sign.KeyName(k), pub)
	}
	pf := filepath.Join(dir, "key.pub")
	os.WriteFile(pf, []byte(pub), 0o644)
	for _, s := range []string{pub, pf} {
		if p, err := sign.ParsePublicKey(s); err != nil || p.String() != pub {
			t.Errorf("ParsePublicKey(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := sign.ParsePublicKey("nope:AAAA"); err == nil {
		t.Errorf("a short public key was accepted")
	}
	for _, bad := range []string{"", "a:b", "a b"} {
		if _, _, err := sign.GenerateKey(bad); err == nil {
			t.Errorf("GenerateKey(%q) accepted", bad)
		}
	}
	// A secret key where a public key belongs: refused, and never echoed,
	// whether given as a key, a file holding one, or a file name.
	secFile := filepath.Join(dir, "as-pub.sec")
	os.WriteFile(secFile, []byte(sec+"\n"), 0o600)
	_, secData, _ := strings.Cut(sec, ":")
	for _, s := range []string{sec, secFile, filepath.Join(dir, sec), "x:" + secData + "\n"} {
		_, err := sign.ParsePublicKey(s)
		if err == nil || strings.Contains(err.Error(), secData) || strings.Contains(err.Error(), secData[:8]) {
			t.Errorf("ParsePublicKey(a secret key) = %v: must fail without echoing the key", err)
		}
	}
	if _, err := sign.ParsePublicKey(sec); err == nil || !strings.Contains(err.Error(), "is a secret key") {
		t.Errorf("ParsePublicKey(secret key) = %v, want it said to be a secret key", err)
	}
	if _, err := sign.ParsePublicKey(secFile); err == nil || !strings.Contains(err.Error(), secFile+" holds a secret key") {
		t.Errorf("ParsePublicKey(secret key file) = %v, want the file named as holding a secret key", err)
	}
	if _, err := sign.ParsePublicKey(filepath.Join(dir, "missing.pub")); err == nil || !strings.Contains(err.Error(), "missing.pub") {
		t.Errorf("ParsePublicKey(missing file) = %v, want the file named", err)
	}
	os.WriteFile(f, []byte("name:c2VjcmV0"), 0o600)
	if _, err := sign.LoadSecretKeyFile(f); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("bad secret key: err = %v (must fail and not echo the key)", err)
	}
}

func writeCache(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		testkit.Must(t, os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644))
	}
	return dir
}

// An invalid narinfo (a symlink, a FIFO, one Nix rejects) is refused,
// never followed: the file it points to stays as it was, and no message
// carries its content.
func TestSignDirRefusesInvalid(t *testing.T) {
	o := testkit.NewOutside(t, "narinfo")
	dir := writeCache(t, map[string]string{
		"nix-cache-info": "StoreDir: /nix/store\n",
		"00000000000000000000000000000000.narinfo": "garbage\n",
	})
	testkit.Must(t, os.Symlink(o.Path("narinfo"), filepath.Join(dir, "70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo")))
	testkit.Must(t, syscall.Mkfifo(filepath.Join(dir, "71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo"), 0o644))
	var refused []string
	stats, err := sign.SignDir(context.Background(), mustKey(t), sign.DirOptions{Dir: dir}, func(file string, _ sign.Outcome, err error) {
		if err != nil {
			testkit.NoSentinel(t, err.Error())
			refused = append(refused, filepath.Base(file))
		}
	})
	if err == nil || stats.Failed != 3 || stats.Added+stats.Replaced != 0 {
		t.Errorf("SignDir: %+v, %v; want 3 failures", stats, err)
	}
	slices.Sort(refused)
	if d := cmp.Diff([]string{"00000000000000000000000000000000.narinfo", "70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo", "71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo"}, refused); d != "" {
		t.Errorf("refused (-want +got):\n%s", d)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v", err)
	}
}

// On a file system without flock sign warns, and signs; with flock it
// does not warn.
func TestSignDirWithoutFlockWarns(t *testing.T) {
	for _, noFlock := range []bool{false, true} {
		dir, _, _ := fakeCache(t)
		ctx := context.Background()
		if noFlock {
			ctx = cachedir.WithFlock(ctx, func(int, int) error { return syscall.ENOLCK })
		}
		var warnings []string
		o := sign.DirOptions{Dir: dir, Warn: func(msg string) { warnings = append(warnings, msg) }}
		stats, err := sign.SignDir(ctx, mustKey(t), o, nil)
		if err != nil || stats.Added != 2 {
			t.Fatalf("no flock %v: %+v, %v", noFlock, stats, err)
		}
		if warned := len(warnings) == 1 && strings.Contains(warnings[0], "no flock"); warned != noFlock {
			t.Errorf("no flock %v: warnings %q", noFlock, warnings)
		}
	}
}
