package nardump

import (
	"bytes"
	"testing"

	"github.com/nix-community/go-nix/pkg/wire"
)

// The pre-encoded token runs must be the NAR strings they stand for.
func TestTokens(t *testing.T) {
	enc := func(toks ...string) string {
		var b bytes.Buffer
		for _, s := range toks {
			if err := wire.WriteString(&b, s); err != nil {
				t.Fatal(err)
			}
		}
		return b.String()
	}
	for _, c := range []struct{ name, got, want string }{
		{"magic", tokMagic, enc("nix-archive-1")},
		{"open", tokOpen, enc("(")},
		{"close", tokClose, enc(")")},
		{"type regular", tokTypeRegular, enc("type", "regular")},
		{"executable", tokExecutable, enc("executable", "")},
		{"contents", tokContents, enc("contents")},
		{"type directory", tokTypeDirectory, enc("type", "directory")},
		{"type symlink", tokTypeSymlink, enc("type", "symlink", "target")},
		{"entry", tokEntryOpenName, enc("entry", "(", "name")},
		{"node", tokNode, enc("node")},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}
