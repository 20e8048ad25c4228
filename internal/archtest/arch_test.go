// Package archtest checks the package layers that docs/architecture.md
// writes down against the imports of the code.
package archtest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

const module = "github.com/mkbinarycache/mkbinarycache/"

// layers reads the layer table of docs/architecture.md: package path
// (relative to the module) -> layer.
func layers(t *testing.T, root string) map[string]int {
	f, err := os.Open(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile(`^\| ([0-9]+) \| ([^|]+) \|`)
	pkg := regexp.MustCompile("`([^`]+)`")
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		for _, p := range pkg.FindAllStringSubmatch(m[2], -1) {
			name := p[1]
			if !strings.HasPrefix(name, "internal/testkit") && name != "internal/nixtest" {
				name = "builder/" + name
			}
			out[name] = n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// TestLayers: every package is in the table, and imports only packages
// of lower layers; no non-test file imports go-cmp, and only the
// benchmark imports the test support.
func TestLayers(t *testing.T) {
	root := nixtest.RepoRoot(t)
	layer := layers(t, root)
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		if name == "internal/archtest" || name == "nix" || name == "vmtests" {
			continue // tests only
		}
		l, ok := layer[name]
		if !ok {
			t.Errorf("%s is in no layer of docs/architecture.md", name)
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "github.com/google/go-cmp") {
				t.Errorf("%s imports %s outside its tests", name, imp)
			}
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if dl, ok := layer[dep]; ok && dl >= l {
				t.Errorf("%s (layer %d) imports %s (layer %d): not below it", name, l, dep, dl)
			}
			if strings.HasPrefix(dep, "internal/") && strings.HasPrefix(name, "builder/") && name != "builder/cmd/cachebench" {
				t.Errorf("%s imports the test support %s outside its tests", name, dep)
			}
		}
	}
	if seen < 20 {
		t.Errorf("only %d packages checked: did the table or go list change?", seen)
	}
}
