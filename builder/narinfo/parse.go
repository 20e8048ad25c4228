// Package narinfo reads narinfo files as Nix does and computes what Nix
// derives from them: the fingerprint that signatures sign, and the store
// path a content address proves. The NarInfo type and its String method are
// go-nix's; only parsing is more lenient here, as Nix's.
package narinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
)

// NarInfo is go-nix's narinfo, whose String method writes Nix's field order.
type NarInfo = narinfo.NarInfo

// knownKeys are the narinfo keys go-nix's parser understands.
var knownKeys = map[string]bool{
	"StorePath": true, "URL": true, "Compression": true, "FileHash": true, "FileSize": true,
	"NarHash": true, "NarSize": true, "References": true, "Deriver": true, "System": true,
	"Sig": true, "CA": true,
}

// Parse parses a narinfo the way Nix does, where go-nix's
// narinfo.Parse is stricter: lines with unknown keys are skipped (Nix
// ignores them; go-nix rejects them), and Sig lines are returned apart,
// malformed ones as BadSigs rather than failing the whole file (Nix keeps
// signatures as opaque strings and only ever finds a bad one invalid).
// The other fields keep go-nix's semantics, including Compression "bzip2"
// when the field is missing.
func Parse(data []byte) (*NarInfo, []string, error) {
	var kept bytes.Buffer
	var sigs []signature.Signature
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			// "References:" without the space: an empty list to go-nix, and
			// harmless for a key nobody reads.
			if k, ok2 := strings.CutSuffix(line, ":"); ok2 && !strings.Contains(k, ":") {
				if k == "References" || !knownKeys[k] {
					continue
				}
			}
			return nil, nil, fmt.Errorf("line %d: %q is not a \"Key: value\" line", n, line)
		}
		switch {
		case !knownKeys[k]:
			continue
		case k == "Sig":
			s, err := signature.ParseSignature(v)
			if err != nil {
				bad = append(bad, v)
				continue
			}
			sigs = append(sigs, s)
			continue
		case k == "References":
			// Nix tokenizes on runs of spaces; go-nix splits on each one.
			v = strings.Join(strings.Fields(v), " ")
		}
		kept.WriteString(k)
		kept.WriteString(": ")
		kept.WriteString(v)
		kept.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read narinfo: %w", err)
	}
	ni, err := narinfo.Parse(&kept)
	if err != nil {
		return nil, nil, err
	}
	ni.Signatures = sigs
	return ni, bad, nil
}

// HashPart is the hash part of a store path or base name: the narinfo of
// /nix/store/<hash>-<name> is <hash>.narinfo.
func HashPart(storePath string) string {
	base := path.Base(storePath)
	if i := strings.IndexByte(base, '-'); i > 0 {
		return base[:i]
	}
	return base
}
