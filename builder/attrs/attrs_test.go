package attrs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

const (
	pA   = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a"
	pB   = "/nix/store/11bgd045z0d4icpbc2yyz4gx48ak44la-b"
	hash = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	out  = "/nix/store/33bgd045z0d4icpbc2yyz4gx48ak44la-binary-cache"
)

var v = closure.Validator{StoreDir: "/nix/store"}

func entry(p string) string {
	return `{"path":"` + p + `","narHash":"` + hash + `","narSize":1,"references":[]}`
}

func TestParse(t *testing.T) {
	in := `{"outputs":{"out":"` + out + `"},"closure":[` + entry(pA) + `],"compression":"xz","compressionLevel":6,
	"jobs":3,"narListing":true,"priority":40,"wantMassQuery":true,"derivers":{"` + pA + `":"/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv"},
	"exportReferencesGraph":{"closure":["` + pA + `"]},"name":"binary-cache","system":"x86_64-linux","preferLocalBuild":true}`
	a, err := Parse([]byte(in), v, "attrs.json")
	if err != nil {
		t.Fatal(err)
	}
	six, three := 6, 3
	want := &Attrs{Out: out, Compression: "xz", Level: &six, Jobs: &three, NarListing: true, Priority: 40, WantMassQuery: true,
		Derivers: map[string]string{pA: "/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-a.drv"}}
	a.Closure = nil
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("attrs (-want +got):\n%s", diff)
	}
}

func TestClosureAttribute(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"closure", `{"closure":[` + entry(pA) + `],"other":[` + entry(pB) + `]}`, []string{pA}},
		{"closureAttr", `{"closureAttr":"other","closure":[` + entry(pA) + `],"other":[` + entry(pB) + `]}`, []string{pB}},
		{"union of exportReferencesGraph", `{"exportReferencesGraph":{"x":["` + pA + `"],"y":["` + pB + `"]},"x":[` + entry(pA) + `],"y":[` + entry(pB) + `,` + entry(pA) + `]}`, []string{pA, pB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse([]byte(tc.in), v, "attrs.json")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range a.Closure {
				got = append(got, p.StorePath)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("closure paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `not json`, "attrs.json: not a structured attrs JSON object"},
		{"list", `[]`, "attrs.json: not a structured attrs JSON object"},
		{"no closure", `{"outputs":{"out":"` + out + `"}}`, `attrs.json: no closure`},
		{"missing closureAttr", `{"closureAttr":"c2"}`, `attrs.json: no attribute "c2" holding the closure`},
		{"bad entry", `{"closure":[{"path":"` + pA + `"}]}`, `attrs.json: attribute "closure": entry 0 (` + pA + `): missing field "narHash"`},
		{"wrong type", `{"closure":[],"jobs":"many"}`, `attrs.json: json: cannot unmarshal string`},
		{"bad deriver", `{"closure":[],"derivers":{"` + pA + `":"/tmp/x.drv"}}`, `attrs.json: derivers: ` + pA + `: "/tmp/x.drv" is not in the store directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), v, "attrs.json")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	attrsFile := "/nonexistent/host/path/.attrs.json"
	getenv := func(k string) string {
		if k == "NIX_ATTRS_JSON_FILE" {
			return attrsFile
		}
		return ""
	}
	if _, err := Find(getenv); err == nil {
		t.Error("Find succeeded without any attrs file")
	}
	// In the sandbox the variable names the host's path; the file is here.
	if err := os.WriteFile(".attrs.json", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(getenv); err != nil || got != ".attrs.json" {
		t.Errorf("Find() = %q, %v; want .attrs.json", got, err)
	}
	other := filepath.Join(dir, "other.json")
	if err := os.WriteFile(other, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	attrsFile = other
	if got, err := Find(getenv); err != nil || got != other {
		t.Errorf("Find() = %q, %v; want %s", got, err, other)
	}
}
