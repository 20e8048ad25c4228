package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// newest is the newest Nix of the matrix: the benchmark's anchor.
func newest(t *testing.T) nixtest.Version {
	t.Helper()
	vs := nixtest.Versions(t)
	return vs[len(vs)-1]
}

// TestQuick runs the whole harness on a tiny closure (every tool, every
// method, one run each), so it cannot rot between the full runs made by
// hand. It is no measurement: the machine may be busy.
func TestQuick(t *testing.T) {
	v := newest(t)
	v.Require(t)
	var out, log bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-rootfs", v.Root}, &out, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	table := out.String()
	for _, row := range []string{
		"| TINY zstd | mkbinarycache | 1 |",
		"| TINY zstd | nix copy " + v.Name + " | 1 |",
		"| TINY zstd | nix copy " + shortVersion(hostNix(t)) + " | 1 |",
		"| TINY zstd | nixpkgs method | 1 |",
		"| TINY zstd | floor: zstd -T",
		"| TINY xz | mkbinarycache, pure Go xz | 1 |",
		"| TINY xz | nixpkgs method | 1 |",
		"| TINY none | nix copy " + v.Name + " | 1 |",
		"| zstd TINY", // no target is about TINY
	} {
		want := !strings.HasPrefix(row, "| zstd TINY")
		if got := strings.Contains(table, row); got != want {
			t.Errorf("row %q in the table: %v, want %v\n%s", row, got, want, table)
		}
	}
}

func hostNix(t *testing.T) string {
	t.Helper()
	v, err := hostVersion()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-cases", "huge:zstd"}, {"-cases", "big:lz4"}, {"-cases", "big"}, {"-tools", "cp"}, {"-runs", "0"}, {"-runs-of", "nixpkgs=0"}, {"-runs-of", "cp=1"}, {"extra"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted it", args)
		}
	}
	cfg, err := parseFlags([]string{"-cases", "many:xz,big:none"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]benchCase{{"many", "xz"}, {"big", "none"}}, cfg.cases, cmp.AllowUnexported(benchCase{})); diff != "" {
		t.Errorf("cases (-want +got):\n%s", diff)
	}
}

func TestStraceTotals(t *testing.T) {
	const out = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 41.05    0.012345          10      1200           write
 30.00    0.010000           5       800        12 openat
  1.00    0.000100           1        30           fstat
------ ----------- ----------- --------- --------- ----------------
100.00    0.030000                  2030        12 total
`
	total, top := straceTotals(out)
	if total != 2030 {
		t.Errorf("total %d, want 2030", total)
	}
	want := []syscallCount{{"write", 1200}, {"openat", 800}, {"fstat", 30}}
	if diff := cmp.Diff(want, top, cmp.AllowUnexported(syscallCount{})); diff != "" {
		t.Errorf("top (-want +got):\n%s", diff)
	}
}

func TestNewerEnv(t *testing.T) {
	root := t.TempDir()
	if _, err := newerEnv(root, t.TempDir(), "/nix"); err == nil {
		t.Error("newerEnv accepted a root file system without a Nix in /opt")
	}
	for _, f := range []string{"usr/bin/nix", "opt/nix235/bin/nix"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e, err := newerEnv(root, t.TempDir(), "/nix")
	if err != nil {
		t.Fatal(err)
	}
	if want := "PATH=/opt/nix235/bin:" + nixtest.ChrootPath; e.vars[0] != want {
		t.Errorf("vars[0] = %q, want %q", e.vars[0], want)
	}
	// Without the flag (or its variable) the column is left out.
	t.Setenv(newerRootfsEnv, "")
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cfg.tools, toolNixNewer) {
		t.Errorf("tools %q without -newer-rootfs", cfg.tools)
	}
}
