package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCICycleQuick runs the CI cycle on the tiny closure, once: both
// methods save and restore, and the table has their rows.
func TestCICycleQuick(t *testing.T) {
	v := newest(t)
	v.Require(t)
	var out, log bytes.Buffer
	if err := run(context.Background(), []string{"-ci-cycle", "-cases", "tiny:zstd", "-runs", "1", "-rootfs", v.Root}, &out, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, row := range []string{
		"| TINY (9 paths, NAR 0 MB) | 4 paths, NAR 0 MB | mkbinarycache --upstream",
		"| TINY (9 paths, NAR 0 MB) | 4 paths, NAR 0 MB | cache-nix-action",
	} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("no row %q in the table:\n%s", row, out.String())
		}
	}
}
