package closure

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// ParseGraph reads the legacy (non-structured) exportReferencesGraph file:
// per path its name, its deriver (may be empty), the number of references
// and the references, one per line. It records no NAR hashes or sizes.
func ParseGraph(r io.Reader, v Validator, source string) (Closure, error) {
	return parseLines(r, v, source, false)
}

// ParseRegistration reads a closureInfo `registration` file, the format of
// `nix-store --register-validity --hash-given`: per path its name, NAR hash,
// NAR size, deriver, the number of references and the references.
func ParseRegistration(r io.Reader, v Validator, source string) (Closure, error) {
	return parseLines(r, v, source, true)
}

func parseLines(r io.Reader, v Validator, source string, hashGiven bool) (Closure, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	next := func(what string) (string, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", fmt.Errorf("%s: line %d: %w", source, line+1, err)
			}
			return "", fmt.Errorf("%s: line %d: unexpected end of file, expected %s", source, line+1, what)
		}
		line++
		return sc.Text(), nil
	}
	var paths []Path
	for sc.Scan() {
		line++
		p := Path{StorePath: sc.Text()}
		if p.StorePath == "" {
			// closureInfo files end with an empty line at most.
			continue
		}
		if err := v.CheckPath(p.StorePath); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", source, line, err)
		}
		if hashGiven {
			s, err := next("a NAR hash")
			if err != nil {
				return nil, err
			}
			if p.NarHash, err = ParseNarHash(s); err != nil {
				return nil, fmt.Errorf("%s: line %d: %s: %w", source, line, p.StorePath, err)
			}
			if s, err = next("a NAR size"); err != nil {
				return nil, err
			}
			if p.NarSize, err = strconv.ParseUint(s, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: line %d: %s: NAR size: %w", source, line, p.StorePath, err)
			}
		}
		deriver, err := next("a deriver")
		if err != nil {
			return nil, err
		}
		p.Deriver = deriver
		s, err := next("a reference count")
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %s: reference count: %w", source, line, p.StorePath, err)
		}
		for i := uint64(0); i < n; i++ {
			ref, err := next("a reference")
			if err != nil {
				return nil, err
			}
			p.References = append(p.References, ref)
		}
		paths = append(paths, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return finish(v, paths, source)
}
