package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadKeepFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "keep")
	if err := os.WriteFile(f, []byte("# roots\n/nix/store/a-x\n\n  /nix/store/b-y  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readKeepFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"/nix/store/a-x", "/nix/store/b-y"}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := readKeepFile(f + "-missing"); err == nil {
		t.Errorf("a missing keep file was accepted")
	}
}
