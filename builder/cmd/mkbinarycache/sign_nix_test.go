package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// sign asks each Nix for the paths valid in its store: on a fresh host of
// each version, a cache nix copy wrote of two local paths is signed with no
// warning, and a narinfo that gives one of them a reference the store does
// not record is refused, named, and left as it was.
func TestSignAsksEachNix(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mkbinarycache")
	testkit.Must(t, nixtest.CopyFile(binary(t), bin, 0o755))
	for _, v := range nixtest.Versions(t) {
		t.Run(v.Name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"a", "b"} {
				testkit.Must(t, os.WriteFile(filepath.Join(dir, f), []byte("sign test "+f+"\n"), 0o644))
			}
			cache, key := filepath.Join(dir, "cache"), filepath.Join(dir, "k.sec")
			q := nixtest.ShellQuote
			out, err := v.FreshStore(t, fmt.Sprintf(`set -e
a=$(nix-store --add %[1]s) b=$(nix-store --add %[2]s)
nix --extra-experimental-features nix-command copy --to file://%[3]s "$a" "$b"
%[4]s keygen sign-test-1 --secret-key-file %[5]s
%[4]s sign --key-file %[5]s %[3]s
echo "== signed"
ha=$(basename "$a" | cut -c1-32)
for f in %[3]s/*.narinfo; do sed -i '/^Sig: sign-test-1:/d' "$f"; done
sed -i "s/^References:.*/References: $(basename "$b")/" %[3]s/$ha.narinfo
cp %[3]s/$ha.narinfo %[6]s
if %[4]s sign --key-file %[5]s %[3]s; then echo "== signed a contradicted narinfo"; fi
cmp %[3]s/$ha.narinfo %[6]s && echo "== left as it was: $a"
`, q(filepath.Join(dir, "a")), q(filepath.Join(dir, "b")), q(cache), q(bin), q(key), q(filepath.Join(dir, "before"))))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			signed, refused, _ := strings.Cut(out, "== signed\n")
			if !strings.Contains(signed, "2 narinfos: 2 signed") || strings.Contains(signed, "warning") {
				t.Errorf("local paths: want both signed, no warning:\n%s", signed)
			}
			if strings.Contains(refused, "== signed a contradicted narinfo") || !strings.Contains(refused, "is valid in the local store, which the narinfo contradicts: the narinfo's References are") ||
				!strings.Contains(refused, "== left as it was: /nix/store/") {
				t.Errorf("a narinfo the store contradicts: want it refused and left as it was:\n%s", refused)
			}
		})
	}
}
