package cli

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// synopsis is the Usage: section of the command's usage text, unindented:
// what the README shows between its usage markers.
func synopsis() string {
	_, rest, _ := strings.Cut(usage, "Usage:\n")
	block, _, _ := strings.Cut(rest, "\n\n")
	var b strings.Builder
	for _, l := range strings.Split(block, "\n") {
		b.WriteString(strings.TrimPrefix(l, "  ") + "\n")
	}
	return b.String()
}

// The README's synopsis is the program's, not a second copy that drifts:
// on a difference, paste the wanted block between the markers.
func TestReadmeSynopsis(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if errors.Is(err, fs.ErrNotExist) {
		// The package's source (nix/package.nix) holds the program only.
		t.Skip("no README.md in this source tree")
	}
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- synopsis: mkbinarycache --help -->\n```\n", "```\n<!-- /synopsis -->"
	_, rest, ok := strings.Cut(string(data), begin)
	got, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("README.md has no synopsis between %q and %q; want:\n%s%s%s", begin, end, begin, synopsis(), end)
	}
	if d := cmp.Diff(synopsis(), got); d != "" {
		t.Errorf("README.md's synopsis differs from the usage text (-usage +README):\n%s", d)
	}
}
