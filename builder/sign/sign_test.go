package sign_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/sign"
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

func writeCache(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSignDir(t *testing.T) {
	key := mustKey(t)
	other, _, err := signature.GenerateKeypair("other-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ni, _, _ := narinfo.Parse([]byte(testkit.HelloUnsigned))
	otherSig, _ := sign.Sign(ni, other, "/nix/store")
	helloOther := testkit.HelloUnsigned + "Sig: " + otherSig.String() + "\n"
	// A signature by test-1 of other content: stale, must be replaced.
	stale := strings.Replace(testkit.BusyboxUnsigned, "CA:", "Sig: "+testkit.HelloSig+"\nCA:", 1)
	dir := writeCache(t, map[string]string{
		"nix-cache-info": "StoreDir: /nix/store\n",
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": helloOther,
		"71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo": stale,
		"not-a-narinfo.ls":                         "{}",
	})
	stats, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sign.DirStats{Files: 2, Added: 1, Replaced: 1}, stats); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	want := map[string]string{
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": helloOther + "Sig: " + testkit.HelloSig + "\n",
		"71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo": strings.Replace(testkit.BusyboxUnsigned, "CA:", "Sig: "+testkit.BusyboxSig+"\nCA:", 1),
	}
	for n, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(w, string(got)); d != "" {
			t.Errorf("%s (-want +got):\n%s", n, d)
		}
	}

	// Idempotent: a second run changes nothing.
	stats, err = sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, StoreDir: "/nix/store"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sign.DirStats{Files: 2, Present: 2}, stats); d != "" {
		t.Errorf("second run stats (-want +got):\n%s", d)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("leftover files: %v", entries)
	}

	if _, err := sign.SignDir(context.Background(), key, sign.DirOptions{Dir: dir, StoreDir: "/opt/store"}, nil); err == nil {
		t.Errorf("a --store-dir contradicting nix-cache-info was accepted")
	}
}

// A missing directory is an error naming it, and is not created: a typo
// in a CI script must not pass as an empty cache signed.
func TestSignDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := sign.SignDir(context.Background(), mustKey(t), sign.DirOptions{Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("SignDir on a missing directory: %v, want an error naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s exists after SignDir: %v", dir, err)
	}
}

func TestSignDirReportsEveryBadNarInfo(t *testing.T) {
	dir := writeCache(t, map[string]string{
		"aaaa.narinfo": "garbage\n",
		"bbbb.narinfo": "StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello\nURL: x\n", // no NarHash
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": testkit.HelloUnsigned,
	})
	stats, err := sign.SignDir(context.Background(), mustKey(t), sign.DirOptions{Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "aaaa.narinfo") || !strings.Contains(err.Error(), "bbbb.narinfo") {
		t.Errorf("err = %v, want both bad narinfos named", err)
	}
	if stats.Added != 1 || stats.Failed != 2 {
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
