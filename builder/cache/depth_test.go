package cache_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cache"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// A NAR nested deeper than Nix 2.34 unpacks is written (older Nix reads
// it) with a warning naming the path and its depth, and verify reports it.
func TestDepthWarning(t *testing.T) {
	s := testkit.NewStore(t)
	// 64 directories and a file: 65 nodes on the longest chain; and 63
	// directories and a file: the deepest Nix accepts.
	c := s.Add(t, testkit.Path{Name: "deep", Files: map[string]string{strings.Repeat("d/", 63) + "f": "x"}},
		testkit.Path{Name: "ok", Files: map[string]string{strings.Repeat("d/", 62) + "f": "x"}})
	deep := c[0].StorePath
	dir := filepath.Join(t.TempDir(), "cache")
	w, err := cache.NewWriter(dir, s.Options(compress.Zstd))
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	if _, err := w.Write(context.Background(), c, func(e cache.Event) {
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
	problems := testkit.Problems(t, verify.Options{Dir: dir})
	if len(problems) != 1 || !strings.HasSuffix(problems[0], ": NAR nesting depth 65 exceeds 64: Nix 2.34 and later refuse to unpack it") {
		t.Errorf("verify problems %q, want one about the depth", problems)
	}
}

// With Durable, NARs are made durable (syncfs) before the narinfos that
// name them, and the narinfos of a chain are published one round each.
func TestDurableRounds(t *testing.T) {
	s := testkit.NewStore(t)
	// A chain: p2 refers to p1, which refers to p0.
	c := s.Add(t, testkit.Path{Name: "p0"}, testkit.Path{Name: "p1", Refs: []string{"p0"}}, testkit.Path{Name: "p2", Refs: []string{"p1"}})
	for _, durable := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "cache")
		o := s.Options(compress.None)
		o.Durable = durable
		w, err := cache.NewWriter(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		st, err := w.Write(context.Background(), c, func(e cache.Event) {
			if e.Kind == cache.Written {
				order = append(order, strings.SplitN(filepath.Base(e.Path), "-", 2)[1])
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, " "); got != "p0 p1 p2" {
			t.Errorf("durable %v: published %s, want references first", durable, got)
		}
		// One syncfs before each of the three narinfos, one after the last.
		if want := map[bool]int{false: 0, true: 4}[durable]; st.Syncs != want {
			t.Errorf("durable %v: %d syncs, want %d", durable, st.Syncs, want)
		}
	}
}
