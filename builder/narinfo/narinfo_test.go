package narinfo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

func TestFingerprint(t *testing.T) {
	ni, _, err := narinfo.Parse([]byte(testkit.HelloUnsigned))
	if err != nil {
		t.Fatal(err)
	}
	want := "1;/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello;sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r;624;" +
		"/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox,/nix/store/li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet"
	got, err := narinfo.Fingerprint(ni, "/nix/store/")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("fingerprint (-want +got):\n%s", d)
	}

	// Nix sorts the references; go-nix keeps their order.
	ni.References = []string{ni.References[1], ni.References[0]}
	if got, _ := narinfo.Fingerprint(ni, "/nix/store"); got != want {
		t.Errorf("unsorted references: got %q, want %q", got, want)
	}
	if ni.Fingerprint() == want {
		t.Errorf("go-nix's Fingerprint sorts now: drop the workaround?")
	}

	// The NarHash is printed as sha256:nix32 whatever form the narinfo had
	// (the SRI form from `nix hash to-sri`).
	hexForm := strings.Replace(testkit.HelloUnsigned, "NarHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r",
		"NarHash: sha256-GSVuxDHaT8i6Mqy4J/ofGM7SX02YEZ5ZLVfg9KlV/2w=", 1)
	if ni2, _, err := narinfo.Parse([]byte(hexForm)); err != nil {
		t.Fatal(err)
	} else if got, _ := narinfo.Fingerprint(ni2, "/nix/store"); got != want {
		t.Errorf("SRI NarHash: got %q, want %q", got, want)
	}
}

func TestFingerprintStoreDir(t *testing.T) {
	ni, _, err := narinfo.Parse([]byte(strings.ReplaceAll(testkit.HelloUnsigned, "/nix/store/", "/opt/store/")))
	if err != nil {
		t.Fatal(err)
	}
	got, err := narinfo.Fingerprint(ni, "/opt/store")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, ";/opt/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox,/opt/store/li6rjy2h1x3kl5l3zqbywafhz3h5dw2a-libgreet") {
		t.Errorf("references not in /opt/store: %q", got)
	}
	if _, err := narinfo.Fingerprint(ni, "/nix/store"); err == nil {
		t.Errorf("a path outside the store dir was fingerprinted")
	}
}

// TestParseFields checks what Parse returns of what it accepts (the
// syntax table checks what it accepts).
func TestParseFields(t *testing.T) {
	in := strings.Replace(testkit.HelloUnsigned, "Deriver:", "FutureKey: some value\nReferences2: x\nDeriver:", 1) +
		"Sig: other:AAAA\nSig: " + testkit.HelloSig + "\n"
	ni, bad, err := narinfo.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"other:AAAA"}, bad); d != "" {
		t.Errorf("bad sigs (-want +got):\n%s", d)
	}
	if len(ni.Signatures) != 1 || ni.Signatures[0].String() != testkit.HelloSig {
		t.Errorf("signatures = %v", ni.Signatures)
	}
	if ni.Deriver != "2fg3l9llrbjwjpcmbhi4siaz3zjjw45b-hello.drv" || len(ni.References) != 2 {
		t.Errorf("fields lost: %+v", ni)
	}

	// Missing Compression means bzip2; runs of spaces in References are one.
	ni, _, err = narinfo.Parse([]byte(strings.NewReplacer("Compression: none\n", "",
		"busybox li6", "busybox  li6").Replace(testkit.HelloUnsigned)))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" {
		t.Errorf("Compression = %q, want bzip2", ni.Compression)
	}
	if len(ni.References) != 2 {
		t.Errorf("References = %q", ni.References)
	}

	// StorePath is cleaned as Nix does.
	ni, _, err = narinfo.Parse([]byte(strings.Replace(testkit.HelloUnsigned, "/nix/store/70gv", "/nix//store/./70gv", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if ni.StorePath != "/nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello" {
		t.Errorf("StorePath = %q", ni.StorePath)
	}
}

// TestParseErrorsHideValues checks that an error names the line and key,
// never the value: a hostile cache's content must not reach the output.
func TestParseErrorsHideValues(t *testing.T) {
	const secret = "SECRETSECRET"
	for _, in := range []string{
		strings.Replace(testkit.HelloUnsigned, "NarSize: 624", "NarSize: "+secret, 1),
		strings.Replace(testkit.HelloUnsigned, "Deriver: ", "Deriver: "+secret, 1),
		testkit.HelloUnsigned + "Sig: " + secret + "\n",
		testkit.HelloUnsigned + "CA: " + secret + "\n",
		secret,
	} {
		_, _, err := narinfo.Parse([]byte(in))
		if err == nil {
			t.Errorf("accepted: %q", in)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the value: %v", err)
		}
	}
}

func TestReadAllLimit(t *testing.T) {
	big := strings.Repeat("x", narinfo.MaxSize+1)
	if _, err := narinfo.ReadAll(strings.NewReader(big)); !errors.Is(err, narinfo.ErrTooLarge) {
		t.Errorf("ReadAll of MaxSize+1 bytes: %v, want ErrTooLarge", err)
	}
	if _, _, err := narinfo.Parse([]byte(big)); !errors.Is(err, narinfo.ErrTooLarge) {
		t.Errorf("Parse of MaxSize+1 bytes: %v, want ErrTooLarge", err)
	}
	if data, err := narinfo.ReadAll(strings.NewReader(testkit.HelloUnsigned)); err != nil || string(data) != testkit.HelloUnsigned {
		t.Errorf("ReadAll = %q, %v", data, err)
	}
}
