package closure

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// jsonEntry is one element of a structured-attrs exportReferencesGraph list or
// of `nix path-info --json`. Unknown fields are ignored; pointers tell a
// missing field from a zero one.
type jsonEntry struct {
	Path       *string   `json:"path"`
	NarHash    *string   `json:"narHash"`
	NarSize    *uint64   `json:"narSize"`
	References *[]string `json:"references"`
	Deriver    *string   `json:"deriver"`
	CA         *string   `json:"ca"`
	Valid      *bool     `json:"valid"`
}

// ParseExportGraph reads the JSON list that Nix puts under an
// exportReferencesGraph attribute in structured attrs. source names the
// input in errors.
func ParseExportGraph(data []byte, v Validator, source string) (Closure, error) {
	var entries []jsonEntry
	if err := strictList(data, &entries); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	paths := make([]Path, 0, len(entries))
	for i, e := range entries {
		if e.Path == nil {
			return nil, fmt.Errorf("%s: entry %d: missing field \"path\"", source, i)
		}
		p, err := e.toPath(*e.Path, v)
		if err != nil {
			return nil, fmt.Errorf("%s: entry %d (%s): %w", source, i, *e.Path, err)
		}
		paths = append(paths, p)
	}
	return finish(v, paths, source)
}

// ParsePathInfo reads `nix path-info --json --recursive` output: a list of
// entries with "path" (Nix < 2.19) or an object keyed by store path (newer
// Nix), whose references and deriver may be base names.
func ParsePathInfo(data []byte, v Validator, source string) (Closure, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		return ParseExportGraph(data, v, source)
	}
	var byPath map[string]*jsonEntry
	if err := json.Unmarshal(data, &byPath); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	paths := make([]Path, 0, len(byPath))
	for sp, e := range byPath {
		if e == nil {
			return nil, fmt.Errorf("%s: %s: not a valid store path", source, sp)
		}
		p, err := e.toPath(v.absolute(sp), v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", source, sp, err)
		}
		paths = append(paths, p)
	}
	return finish(v, paths, source)
}

func (e *jsonEntry) toPath(sp string, v Validator) (Path, error) {
	if e.Valid != nil && !*e.Valid {
		return Path{}, fmt.Errorf("not a valid store path")
	}
	switch {
	case e.NarHash == nil:
		return Path{}, fmt.Errorf("missing field \"narHash\"")
	case e.NarSize == nil:
		return Path{}, fmt.Errorf("missing field \"narSize\"")
	case e.References == nil:
		return Path{}, fmt.Errorf("missing field \"references\"")
	}
	h, err := ParseNarHash(*e.NarHash)
	if err != nil {
		return Path{}, err
	}
	p := Path{StorePath: sp, NarHash: h, NarSize: *e.NarSize}
	for _, r := range *e.References {
		p.References = append(p.References, v.absolute(r))
	}
	if e.Deriver != nil && *e.Deriver != "" {
		p.Deriver = v.absolute(*e.Deriver)
	}
	if e.CA != nil {
		p.CA = *e.CA
	}
	return p, nil
}

// absolute turns a base name into a store path; absolute paths stay.
func (v Validator) absolute(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return v.StoreDir + "/" + p
}

// strictList decodes a JSON array, saying what it found instead when it is not one.
func strictList(data []byte, out *[]jsonEntry) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("not a list of store path entries: %w", err)
	}
	return nil
}
