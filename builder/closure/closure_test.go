package closure

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nix-community/go-nix/pkg/nixhash"
)

const (
	pA = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a"
	pB = "/nix/store/11bgd045z0d4icpbc2yyz4gx48ak44la-b"
	// One sha256 in each form Nix prints.
	hNix32  = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	hBase16 = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	hSRI    = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
)

var v = Validator{StoreDir: "/nix/store"}

func nix32(t *testing.T, h *nixhash.Hash) string {
	t.Helper()
	if h == nil {
		return ""
	}
	return h.Format(nixhash.NixBase32, true)
}

// summary flattens a closure for readable diffs.
func summary(t *testing.T, c Closure) []map[string]any {
	var out []map[string]any
	for _, p := range c {
		out = append(out, map[string]any{"path": p.StorePath, "hash": nix32(t, p.NarHash), "size": p.NarSize,
			"refs": strings.Join(p.References, " "), "deriver": p.Deriver, "ca": p.CA})
	}
	return out
}

func TestParseExportGraph(t *testing.T) {
	in := `[
	 {"path":"` + pB + `","narHash":"` + hSRI + `","narSize":8,"references":["` + pB + `","` + pA + `"],"closureSize":9,"unknown":{"x":1}},
	 {"path":"` + pA + `","narHash":"` + hBase16 + `","narSize":7,"references":[],"ca":"fixed:r:sha256:xyz","deriver":"/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv"}]`
	c, err := ParseExportGraph([]byte(in), v, "attrs")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"path": pA, "hash": hNix32, "size": uint64(7), "refs": "", "deriver": "/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv", "ca": "fixed:r:sha256:xyz"},
		{"path": pB, "hash": hNix32, "size": uint64(8), "refs": pA + " " + pB, "deriver": "", "ca": ""},
	}
	if diff := cmp.Diff(want, summary(t, c)); diff != "" {
		t.Errorf("closure (-want +got):\n%s", diff)
	}
}

func TestParseExportGraphErrors(t *testing.T) {
	entry := func(fields string) string { return `[{` + fields + `}]` }
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `{`, "not a list"},
		{"object", `{"a":1}`, "not a list"},
		{"no path", entry(`"narHash":"` + hNix32 + `","narSize":1,"references":[]`), `entry 0: missing field "path"`},
		{"no narHash", entry(`"path":"` + pA + `","narSize":1,"references":[]`), pA + `): missing field "narHash"`},
		{"no narSize", entry(`"path":"` + pA + `","narHash":"` + hNix32 + `","references":[]`), `missing field "narSize"`},
		{"no references", entry(`"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":1`), `missing field "references"`},
		{"bad hash", entry(`"path":"` + pA + `","narHash":"sha256:zz","narSize":1,"references":[]`), `NAR hash "sha256:zz"`},
		{"md5 hash", entry(`"path":"` + pA + `","narHash":"md5:d41d8cd98f00b204e9800998ecf8427e","narSize":1,"references":[]`), `NAR hash`},
		{"outside store", entry(`"path":"/tmp/x","narHash":"` + hNix32 + `","narSize":1,"references":[]`), `"/tmp/x" is not in the store directory /nix/store`},
		{"dotdot", entry(`"path":"/nix/store/../etc","narHash":"` + hNix32 + `","narSize":1,"references":[]`), `not a top-level store path`},
		{"subpath", entry(`"path":"` + pA + `/bin","narHash":"` + hNix32 + `","narSize":1,"references":[]`), `not a top-level store path`},
		{"bad name", entry(`"path":"/nix/store/short-a","narHash":"` + hNix32 + `","narSize":1,"references":[]`), `not a valid store path`},
		{"dangling ref", entry(`"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":1,"references":["` + pB + `"]`), `refers to ` + pB + `, which is not in the closure`},
		{"negative size", entry(`"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":-1,"references":[]`), `not a list`},
		{"twice", `[{"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":1,"references":[]},{"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":1,"references":[]}]`, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseExportGraph([]byte(tc.in), v, "attrs")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "attrs") {
				t.Errorf("error %v, want one starting with attrs and containing %q", err, tc.want)
			}
		})
	}
}

func TestParsePathInfo(t *testing.T) {
	// Nix >= 2.19: an object keyed by path; newest Nix writes base names.
	in := `{"` + pA + `":{"narHash":"` + hSRI + `","narSize":7,"references":[],"deriver":"22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv","valid":true},
	"` + pB + `":{"narHash":"` + hNix32 + `","narSize":8,"references":["00bgd045z0d4icpbc2yyz4gx48ak44la-a"]}}`
	c, err := ParsePathInfo([]byte(in), v, "path-info")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"path": pA, "hash": hNix32, "size": uint64(7), "refs": "", "deriver": "/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv", "ca": ""},
		{"path": pB, "hash": hNix32, "size": uint64(8), "refs": pA, "deriver": "", "ca": ""},
	}
	if diff := cmp.Diff(want, summary(t, c)); diff != "" {
		t.Errorf("closure (-want +got):\n%s", diff)
	}
	// Nix 2.8: a list.
	list := `[{"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":7,"references":[],"valid":true}]`
	if _, err := ParsePathInfo([]byte(list), v, "path-info"); err != nil {
		t.Error(err)
	}
	invalid := `{"` + pA + `":null}`
	if _, err := ParsePathInfo([]byte(invalid), v, "path-info"); err == nil || !strings.Contains(err.Error(), "not a valid store path") {
		t.Errorf("invalid path: error %v", err)
	}
}

func TestParseGraphAndRegistration(t *testing.T) {
	graph := pB + "\n\n2\n" + pA + "\n" + pB + "\n" + pA + "\n/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv\n0\n"
	c, err := ParseGraph(strings.NewReader(graph), v, "graph")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"path": pA, "hash": "", "size": uint64(0), "refs": "", "deriver": "/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv", "ca": ""},
		{"path": pB, "hash": "", "size": uint64(0), "refs": pA + " " + pB, "deriver": "", "ca": ""},
	}
	if diff := cmp.Diff(want, summary(t, c)); diff != "" {
		t.Errorf("graph (-want +got):\n%s", diff)
	}

	reg := pA + "\n" + hSRI + "\n7\n\n0\n" + pB + "\n" + hNix32 + "\n8\n\n1\n" + pA + "\n"
	c, err = ParseRegistration(strings.NewReader(reg), v, "registration")
	if err != nil {
		t.Fatal(err)
	}
	want = []map[string]any{
		{"path": pA, "hash": hNix32, "size": uint64(7), "refs": "", "deriver": "", "ca": ""},
		{"path": pB, "hash": hNix32, "size": uint64(8), "refs": pA, "deriver": "", "ca": ""},
	}
	if diff := cmp.Diff(want, summary(t, c)); diff != "" {
		t.Errorf("registration (-want +got):\n%s", diff)
	}
}

func TestParseLinesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		reg            bool
	}{
		{"truncated", pA + "\n\n2\n" + pA + "\n", "line 5: unexpected end of file, expected a reference", false},
		{"bad count", pA + "\n\nx\n", "line 3: " + pA + ": reference count", false},
		{"outside store", "/usr/bin\n\n0\n", `line 1: "/usr/bin" is not in the store directory`, false},
		{"bad hash", pA + "\nsha256:nope\n7\n\n0\n", "line 2: " + pA + `: NAR hash "sha256:nope"`, true},
		{"bad size", pA + "\n" + hNix32 + "\nseven\n\n0\n", "line 3: " + pA + ": NAR size", true},
		{"no size", pA + "\n" + hNix32 + "\n", "line 3: unexpected end of file, expected a NAR size", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := ParseGraph
			if tc.reg {
				parse = ParseRegistration
			}
			_, err := parse(strings.NewReader(tc.in), v, "f")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	h, _ := ParseNarHash(hNix32)
	a := Path{StorePath: pA, NarHash: h, NarSize: 7}
	b := Path{StorePath: pB, NarHash: h, NarSize: 8, References: []string{pA}}
	c, err := Merge(Closure{b, a}, Closure{a})
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c[0].StorePath != pA || c[1].StorePath != pB {
		t.Errorf("merge: %v", summary(t, c))
	}
	a2 := a
	a2.NarSize = 9
	if _, err := Merge(Closure{a}, Closure{a2}); err == nil || !strings.Contains(err.Error(), pA+" is described differently") {
		t.Errorf("conflict: error %v", err)
	}
}

func TestOtherStoreDir(t *testing.T) {
	v := Validator{StoreDir: "/opt/store"}
	in := `[{"path":"/opt/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a","narHash":"` + hNix32 + `","narSize":1,"references":[]}]`
	if _, err := ParseExportGraph([]byte(in), v, "attrs"); err != nil {
		t.Error(err)
	}
	in = `[{"path":"` + pA + `","narHash":"` + hNix32 + `","narSize":1,"references":[]}]`
	if _, err := ParseExportGraph([]byte(in), v, "attrs"); err == nil {
		t.Error("a /nix/store path was accepted for store /opt/store")
	}
}
