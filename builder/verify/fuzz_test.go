package verify

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzNarInfo runs the whole check of one narinfo on fuzzed contents, in a
// cache that holds the NAR the seed narinfo (written by `nix copy`) names:
// no narinfo may crash verify, and the seed itself has no problems.
func FuzzNarInfo(f *testing.F) {
	seedDir := filepath.Join("testdata", "seed")
	const name = "f8d1h7s7d4pw4g3ms3awakf6n56sbjmq.narinfo"
	seed, err := os.ReadFile(filepath.Join(seedDir, name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("StorePath: /nix/store/f8d1h7s7d4pw4g3ms3awakf6n56sbjmq-libgreet\nURL: nar/1sags8ilz7c1kzxz0fiddb1b3253i524bkl6dnaw8dkqi2ssjbxq.nar.zst\nCompression: none\nNarSize: 1\n"))
	f.Add([]byte("StorePath: /nix/store/f8d1h7s7d4pw4g3ms3awakf6n56sbjmq-libgreet\nURL: ../nix-cache-info\nFileHash: md5:00000000000000000000000000000000\nNarHash: sha1:0000000000000000000000000000000000000000\n"))
	info, err := os.ReadFile(filepath.Join(seedDir, "nix-cache-info"))
	if err != nil {
		f.Fatal(err)
	}
	nars, err := filepath.Glob(filepath.Join(seedDir, "nar", "*"))
	if err != nil || len(nars) == 0 {
		f.Fatalf("no seed NAR: %v", err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := fuzzDir(t)
		if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range nars {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "nar", filepath.Base(n)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), info, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		var problems []Problem
		// A hang is a bug too: a narinfo must not stall verify.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stats, err := Cache(ctx, Options{Dir: dir, Jobs: 1}, func(p Problem) { problems = append(problems, p) })
		if err != nil {
			t.Fatalf("verify stopped: %v", err)
		}
		if string(data) == string(seed) && stats.Problems != 0 {
			t.Fatalf("the seed has problems: %v", problems)
		}
	})
}

// fuzzDir is a temporary directory in memory where there is one: thousands
// of runs a second on disk stall on block I/O.
func fuzzDir(t *testing.T) string {
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "verify-fuzz-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
