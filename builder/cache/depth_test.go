package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/closure"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
)

// A NAR nested deeper than Nix 2.34 unpacks is written (older Nix reads
// it) with a warning naming the path and its depth, and verify reports it.
func TestDepthWarning(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	deep := filepath.Join(store, "00bgd045z0d4icpbc2yyz4gx48ak44la-deep")
	ok := filepath.Join(store, "11bgd045z0d4icpbc2yyz4gx48ak44la-ok")
	// 64 directories and a file: 65 nodes on the longest chain.
	if err := os.MkdirAll(deep+strings.Repeat("/d", 63), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deep+strings.Repeat("/d", 63)+"/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// 63 directories and a file: the deepest Nix accepts.
	if err := os.MkdirAll(ok+strings.Repeat("/d", 62), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ok+strings.Repeat("/d", 62)+"/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	w, err := cache.NewWriter(dir, cache.Options{StoreDir: store, Compression: compress.Zstd, Level: compress.DefaultLevel})
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	if _, err := w.Write(context.Background(), closure.Closure{{StorePath: deep}, {StorePath: ok}}, func(e cache.Event) {
		if e.Kind == cache.Warning {
			warnings = append(warnings, e.Path+": "+e.Msg)
		}
	}); err != nil {
		t.Fatal(err)
	}
	want := deep + ": NAR nesting depth 65 exceeds 64: Nix 2.34 and later refuse to unpack it"
	if len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings %q, want [%q]", warnings, want)
	}
	var problems []string
	if _, err := verify.Cache(context.Background(), verify.Options{Dir: dir}, func(p verify.Problem) {
		problems = append(problems, p.Msg)
	}); err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.HasSuffix(problems[0], ": NAR nesting depth 65 exceeds 64: Nix 2.34 and later refuse to unpack it") {
		t.Errorf("verify problems %q, want one about the depth", problems)
	}
}

// With Durable, NARs are made durable (syncfs) before the narinfos that
// name them, and the narinfos of a chain are published one round each.
func TestDurableRounds(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	var c closure.Closure
	var prev string
	for _, h := range []string{"00bgd045z0d4icpbc2yyz4gx48ak44la", "11bgd045z0d4icpbc2yyz4gx48ak44la", "22bgd045z0d4icpbc2yyz4gx48ak44la"} {
		p := filepath.Join(store, h+"-p")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		refs := []string{}
		if prev != "" {
			refs = append(refs, prev)
		}
		c = append(c, closure.Path{StorePath: p, References: refs})
		prev = p
	}
	for _, durable := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "cache")
		w, err := cache.NewWriter(dir, cache.Options{StoreDir: store, Compression: compress.None, Level: compress.DefaultLevel, Durable: durable})
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		st, err := w.Write(context.Background(), c, func(e cache.Event) {
			if e.Kind == cache.Written {
				order = append(order, filepath.Base(e.Path)[:2])
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, " "); got != "00 11 22" {
			t.Errorf("durable %v: published %s, want references first", durable, got)
		}
		// One syncfs before each of the three narinfos, one after the last.
		if want := map[bool]int{false: 0, true: 4}[durable]; st.Syncs != want {
			t.Errorf("durable %v: %d syncs, want %d", durable, st.Syncs, want)
		}
	}
}
