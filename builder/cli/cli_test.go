package cli

import (
	"flag"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The command's behaviour is tested where the command is built
// (builder/cmd/mkbinarycache); here, its internals.

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	b := fs.Bool("b", false, "")
	s := fs.String("s", "", "")
	pos, err := parseInterspersed(fs, []string{"x", "-b", "y", "-s", "v", "--", "-z", "w"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"x", "y", "-z", "w"}, pos); d != "" || !*b || *s != "v" {
		t.Errorf("pos (-want +got): %s; b=%v s=%q", d, *b, *s)
	}
}
