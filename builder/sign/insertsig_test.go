package sign

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
