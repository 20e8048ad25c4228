// Package attrs reads the structured attributes (.attrs.json) that Nix hands
// a derivation builder: the output path, the closure and the options of
// mkBinaryCache.
package attrs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// Attrs are the parts of a derivation's structured attrs the builder uses.
type Attrs struct {
	Out            string // outputs.out, "" when absent
	Closure        closure.Closure
	Compression    string // "" when absent
	Level          *int   // compressionLevel
	Jobs           *int
	NarListing     bool
	IndexDebugInfo bool
	Priority       int
	WantMassQuery  bool
	Derivers       map[string]string // store path -> .drv path
	// XZProgram is an xz(1) to compress xz NARs with (xzProgram, e.g.
	// "${pkgs.xz}/bin/xz"); "" for the pure Go encoder.
	XZProgram string
}

// file mirrors the JSON; unknown attributes are ignored.
type file struct {
	Outputs               map[string]string          `json:"outputs"`
	ClosureAttr           *string                    `json:"closureAttr"`
	ExportReferencesGraph map[string]json.RawMessage `json:"exportReferencesGraph"`
	Compression           *string                    `json:"compression"`
	CompressionLevel      *int                       `json:"compressionLevel"`
	Jobs                  *int                       `json:"jobs"`
	NarListing            *bool                      `json:"narListing"`
	IndexDebugInfo        *bool                      `json:"indexDebugInfo"`
	Priority              *int                       `json:"priority"`
	WantMassQuery         *bool                      `json:"wantMassQuery"`
	Derivers              map[string]string          `json:"derivers"`
	XZProgram             *string                    `json:"xzProgram"`
}

// Find returns the structured attrs file of the running build: the file
// NIX_ATTRS_JSON_FILE names (as getenv reads it), else .attrs.json in the
// working directory. In
// the sandbox Nix 2.8 sets NIX_ATTRS_JSON_FILE to the host's path, which does
// not exist there, while the file is in the working directory.
func Find(getenv func(string) string) (string, error) {
	if f := getenv("NIX_ATTRS_JSON_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			return f, nil
		}
	}
	if _, err := os.Stat(".attrs.json"); err == nil {
		return ".attrs.json", nil
	}
	return "", errors.New("no structured attrs: NIX_ATTRS_JSON_FILE is unset or missing and there is no .attrs.json in the working directory")
}

// Read parses the structured attrs file name. The closure is the list under
// the attribute closureAttr names (default "closure"); without one, the
// union of every exportReferencesGraph list.
func Read(name string, v closure.Validator) (*Attrs, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return Parse(data, v, name)
}

// Parse is Read on the file's contents; source names it in errors.
func Parse(data []byte, v closure.Validator, source string) (*Attrs, error) {
	var f file
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: not a structured attrs JSON object: %w", source, err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	a := &Attrs{Out: f.Outputs["out"], Level: f.CompressionLevel, Jobs: f.Jobs, Derivers: f.Derivers}
	if f.XZProgram != nil {
		a.XZProgram = *f.XZProgram
	}
	if f.Compression != nil {
		a.Compression = *f.Compression
	}
	a.NarListing = f.NarListing != nil && *f.NarListing
	a.IndexDebugInfo = f.IndexDebugInfo != nil && *f.IndexDebugInfo
	a.WantMassQuery = f.WantMassQuery != nil && *f.WantMassQuery
	if f.Priority != nil {
		a.Priority = *f.Priority
	}
	for p, d := range a.Derivers {
		if err := v.CheckPath(p); err != nil {
			return nil, fmt.Errorf("%s: derivers: %w", source, err)
		}
		if err := v.CheckPath(d); err != nil {
			return nil, fmt.Errorf("%s: derivers: %s: %w", source, p, err)
		}
	}

	var names []string
	switch {
	case f.ClosureAttr != nil:
		names = []string{*f.ClosureAttr}
	case raw["closure"] != nil:
		names = []string{"closure"}
	default:
		for n := range f.ExportReferencesGraph {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no closure: there is no attribute \"closure\", no closureAttr and no exportReferencesGraph", source)
	}
	var cs []closure.Closure
	for _, n := range names {
		list, ok := raw[n]
		if !ok {
			return nil, fmt.Errorf("%s: no attribute %q holding the closure", source, n)
		}
		c, err := closure.ParseExportGraph(list, v, fmt.Sprintf("%s: attribute %q", source, n))
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	var err error
	if a.Closure, err = closure.Merge(cs...); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return a, nil
}
