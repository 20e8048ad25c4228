package order

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLayers(t *testing.T) {
	refs := map[string][]string{
		"app":  {"app", "lib", "libc", "elsewhere"},
		"lib":  {"libc"},
		"libc": nil,
		"doc":  nil,
	}
	got, err := Layers([]string{"app", "lib", "libc", "doc"}, func(n string) []string { return refs[n] })
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"doc", "libc"}, {"lib"}, {"app"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layers (-want +got):\n%s", d)
	}
	refs["libc"] = []string{"app"}
	if _, err := Layers([]string{"app", "lib", "libc"}, func(n string) []string { return refs[n] }); err == nil {
		t.Errorf("a cycle was accepted")
	}
}
