package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// TestQuick runs the whole harness on a tiny closure, so it cannot rot
// between the full runs made by hand.
func TestQuick(t *testing.T) {
	nixtest.Require(t)
	var out, log bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-work", t.TempDir()}, &out, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	table := out.String()
	for _, m := range []string{"zstd", "xz", "none"} {
		for _, tool := range []string{toolOurs, toolNixCopy} {
			if !strings.Contains(table, "| TINY | "+m+" | "+tool+" | 1 |") {
				t.Errorf("no %s row for %s in the table:\n%s", tool, m, table)
			}
		}
	}
	if !strings.Contains(table, toolFloor) {
		t.Errorf("no floor row:\n%s", table)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-closures", "huge"}, {"-methods", "lz4"}, {"-tools", "cp"}, {"-runs", "0"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted it", args)
		}
	}
}
