package nixquery

import (
	"errors"
	"strings"
)

// parseDrvOutputs reads the output paths from a derivation in Nix's ATerm
// form: Derive([("out","/nix/store/…","",""),…],…). A floating
// content-addressed output has no path there: that is an error.
func parseDrvOutputs(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "Derive([")
	if !ok {
		return nil, errors.New("not a derivation")
	}
	var outs []string
	for !strings.HasPrefix(rest, "]") {
		var fields [4]string
		var ok bool
		if rest, ok = strings.CutPrefix(rest, "("); !ok {
			return nil, errors.New("bad output list")
		}
		for i := range fields {
			var err error
			if fields[i], rest, err = atermString(rest); err != nil {
				return nil, err
			}
			sep := ","
			if i == len(fields)-1 {
				sep = ")"
			}
			if rest, ok = strings.CutPrefix(rest, sep); !ok {
				return nil, errors.New("bad output tuple")
			}
		}
		if fields[1] == "" {
			return nil, errors.New("an output without a path")
		}
		outs = append(outs, fields[1])
		rest = strings.TrimPrefix(rest, ",")
	}
	if len(outs) == 0 {
		return nil, errors.New("no outputs")
	}
	return outs, nil
}

// atermString reads a quoted string with Nix's escapes from the start of s.
func atermString(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New("expected a string")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) {
				return "", "", errors.New("unterminated string")
			}
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated string")
}
