package sign

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
)

// A throwaway key made with `nix-store --generate-binary-cache-key test-1`,
// and narinfos that `nix copy` wrote and `nix store sign` signed with it
// (Nix 2.8): golden vectors for the fingerprint and the signature.
const (
	testSecret = "test-1:ry47cmosKUlDckZ2QGEgKuSgeIcKvvA+B061K+LiB7kl8kF8mBYoabiY1Iu3KN1fOz5sPmV3vXveIN+lkczwLg=="
	testPublic = "test-1:JfJBfJgWKGm4mNSLtyjdXzs+bD5ld7173iDfpZHM8C4="

	helloUnsigned = `StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello
URL: nar/0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r.nar
Compression: none
FileHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r
FileSize: 624
NarHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r
NarSize: 624
References: 71fc7s32zl20dc955bhghy5dvalm7ndz-busybox li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet
Deriver: 2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv
`
	helloSig = "test-1:wgyWF9w1m4ZRDaXeOGcjaIWYzt2GLWmx3KMBCR5x2ykAyRRpOUiiPbpFt2it/NL6ee2PVmB0iTTucMKvv7DNDw=="

	busyboxUnsigned = `StorePath: /nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox
URL: nar/0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29.nar
Compression: none
FileHash: sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
FileSize: 1982736
NarHash: sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
NarSize: 1982736
References: 
CA: fixed:r:sha256:0h2cvvd5bkprq91zyak0149xwqr6p5hc0vw1xrshlzfg6z8dlk29
`
	busyboxSig = "test-1:zhd7J5mVyAVqSx2eaXk7yz5gNybCOhiiwJ+KVqa/5XZGQMJCRvsbbbGH6DITeo5chTsnKfBPWC0lBGmj39EBAg=="
)

func mustKey(t *testing.T) signature.SecretKey {
	t.Helper()
	k, err := signature.LoadSecretKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFingerprint(t *testing.T) {
	ni, _, err := ParseNarInfo([]byte(helloUnsigned))
	if err != nil {
		t.Fatal(err)
	}
	want := "1;/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello;sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r;624;" +
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox,/nix/store/li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet"
	got, err := Fingerprint(ni, "/nix/store/")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("fingerprint (-want +got):\n%s", d)
	}

	// Nix sorts the references; go-nix keeps their order.
	ni.References = []string{ni.References[1], ni.References[0]}
	if got, _ := Fingerprint(ni, "/nix/store"); got != want {
		t.Errorf("unsorted references: got %q, want %q", got, want)
	}
	if ni.Fingerprint() == want {
		t.Errorf("go-nix's Fingerprint sorts now: drop the workaround?")
	}

	// The NarHash is printed as sha256:nix32 whatever form the narinfo had
	// (the SRI form from `nix hash to-sri`).
	hexForm := strings.Replace(helloUnsigned, "NarHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r",
		"NarHash: sha256-GSVuxDHaT8i6Mqy4J/ofGM7SX02YEZ5ZLVfg9KlV/2w=", 1)
	if ni2, _, err := ParseNarInfo([]byte(hexForm)); err != nil {
		t.Fatal(err)
	} else if got, _ := Fingerprint(ni2, "/nix/store"); got != want {
		t.Errorf("SRI NarHash: got %q, want %q", got, want)
	}
}

func TestFingerprintStoreDir(t *testing.T) {
	ni, _, err := ParseNarInfo([]byte(strings.ReplaceAll(helloUnsigned, "/nix/store/", "/opt/store/")))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Fingerprint(ni, "/opt/store")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, ";/opt/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox,/opt/store/li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet") {
		t.Errorf("references not in /opt/store: %q", got)
	}
	if _, err := Fingerprint(ni, "/nix/store"); err == nil {
		t.Errorf("a path outside the store dir was fingerprinted")
	}
}

func TestSignMatchesNix(t *testing.T) {
	key := mustKey(t)
	if got := key.ToPublicKey().String(); got != testPublic {
		t.Fatalf("public key %q, want %q", got, testPublic)
	}
	for _, tc := range []struct{ name, narinfo, sig string }{
		{"hello", helloUnsigned, helloSig},
		{"busybox (CA, no references)", busyboxUnsigned, busyboxSig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ni, _, err := ParseNarInfo([]byte(tc.narinfo))
			if err != nil {
				t.Fatal(err)
			}
			s, err := Sign(ni, key, "/nix/store")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.sig, s.String()); d != "" {
				t.Errorf("signature differs from Nix's (-nix +ours):\n%s", d)
			}
			pub, err := ParsePublicKey(testPublic)
			if err != nil {
				t.Fatal(err)
			}
			ni.Signatures = append(ni.Signatures, s)
			valid, err := Valid(ni, []signature.PublicKey{pub}, "/nix/store")
			if err != nil || len(valid) != 1 {
				t.Errorf("Valid = %v, %v; want our signature", valid, err)
			}
			ni.NarSize++
			if valid, _ := Valid(ni, []signature.PublicKey{pub}, "/nix/store"); len(valid) != 0 {
				t.Errorf("signature still valid after NarSize changed")
			}
		})
	}
}

func TestParseNarInfoTolerant(t *testing.T) {
	in := strings.Replace(helloUnsigned, "Deriver:", "FutureKey: some value\nReferences2: x\nDeriver:", 1) +
		"Sig: other:not-base64!\nSig: " + helloSig + "\n"
	ni, bad, err := ParseNarInfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"other:not-base64!"}, bad); d != "" {
		t.Errorf("bad sigs (-want +got):\n%s", d)
	}
	if len(ni.Signatures) != 1 || ni.Signatures[0].String() != helloSig {
		t.Errorf("signatures = %v", ni.Signatures)
	}
	if ni.Deriver != "2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv" || len(ni.References) != 2 {
		t.Errorf("fields lost: %+v", ni)
	}

	// Missing Compression means bzip2; runs of spaces in References are one.
	ni, _, err = ParseNarInfo([]byte(strings.NewReplacer("Compression: none\n", "",
		"busybox li6", "busybox  li6").Replace(helloUnsigned)))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" {
		t.Errorf("Compression = %q, want bzip2", ni.Compression)
	}
	if len(ni.References) != 2 {
		t.Errorf("References = %q", ni.References)
	}

	if _, _, err := ParseNarInfo([]byte("StorePath /nix/store/x\n")); err == nil {
		t.Errorf("a line without a key was accepted")
	}
}

func TestInsertSig(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"at the end", "A: 1\nB: 2\n", "A: 1\nB: 2\nSig: k:S\n"},
		{"no final newline", "A: 1", "A: 1\nSig: k:S\n"},
		{"before CA", "A: 1\nCA: x\n", "A: 1\nSig: k:S\nCA: x\n"},
		{"after other sigs", "A: 1\nSig: o:1\nSig: p:2\nCA: x\n", "A: 1\nSig: o:1\nSig: p:2\nSig: k:S\nCA: x\n"},
		{"replaces ours", "A: 1\nSig: k:OLD\nSig: o:1\n", "A: 1\nSig: o:1\nSig: k:S\n"},
		{"keeps a longer name", "Sig: kk:1\n", "Sig: kk:1\nSig: k:S\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := insertSig([]byte(tc.in), "k", "k:S")
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
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
	ni, _, _ := ParseNarInfo([]byte(helloUnsigned))
	otherSig, _ := Sign(ni, other, "/nix/store")
	helloOther := helloUnsigned + "Sig: " + otherSig.String() + "\n"
	// A signature by test-1 of other content: stale, must be replaced.
	stale := strings.Replace(busyboxUnsigned, "CA:", "Sig: "+helloSig+"\nCA:", 1)
	dir := writeCache(t, map[string]string{
		"nix-cache-info": "StoreDir: /nix/store\n",
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": helloOther,
		"71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo": stale,
		"not-a-narinfo.ls":                         "{}",
	})
	stats, err := SignDir(context.Background(), key, DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(DirStats{Added: 1, Replaced: 1}, stats); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	want := map[string]string{
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": helloOther + "Sig: " + helloSig + "\n",
		"71fc7s32zl20dc955bhghy5dvalm7ndz.narinfo": strings.Replace(busyboxUnsigned, "CA:", "Sig: "+busyboxSig+"\nCA:", 1),
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
	stats, err = SignDir(context.Background(), key, DirOptions{Dir: dir, StoreDir: "/nix/store"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(DirStats{Present: 2}, stats); d != "" {
		t.Errorf("second run stats (-want +got):\n%s", d)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("leftover files: %v", entries)
	}

	if _, err := SignDir(context.Background(), key, DirOptions{Dir: dir, StoreDir: "/opt/store"}); err == nil {
		t.Errorf("a --store-dir contradicting nix-cache-info was accepted")
	}
}

func TestSignDirReportsEveryBadNarInfo(t *testing.T) {
	dir := writeCache(t, map[string]string{
		"aaaa.narinfo": "garbage\n",
		"bbbb.narinfo": "StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello\nURL: x\n", // no NarHash
		"70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo": helloUnsigned,
	})
	stats, err := SignDir(context.Background(), mustKey(t), DirOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "aaaa.narinfo") || !strings.Contains(err.Error(), "bbbb.narinfo") {
		t.Errorf("err = %v, want both bad narinfos named", err)
	}
	if stats.Added != 1 || stats.Failed != 2 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestKeys(t *testing.T) {
	sec, pub, err := GenerateKey("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "key.sec")
	os.WriteFile(f, []byte(sec+"\n"), 0o600)
	k, err := LoadSecretKeyFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if k.ToPublicKey().String() != pub || KeyName(k) != "cache.example.org-1" {
		t.Errorf("public key %q name %q, want %q", k.ToPublicKey(), KeyName(k), pub)
	}
	pf := filepath.Join(dir, "key.pub")
	os.WriteFile(pf, []byte(pub), 0o644)
	for _, s := range []string{pub, pf} {
		if p, err := ParsePublicKey(s); err != nil || p.String() != pub {
			t.Errorf("ParsePublicKey(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePublicKey("nope:AAAA"); err == nil {
		t.Errorf("a short public key was accepted")
	}
	for _, bad := range []string{"", "a:b", "a b"} {
		if _, _, err := GenerateKey(bad); err == nil {
			t.Errorf("GenerateKey(%q) accepted", bad)
		}
	}
	os.WriteFile(f, []byte("name:c2VjcmV0"), 0o600)
	if _, err := LoadSecretKeyFile(f); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("bad secret key: err = %v (must fail and not echo the key)", err)
	}
}
