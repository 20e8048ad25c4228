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
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixhash"
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
	ni := &NarInfo{}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	// Small to start with: gc and copy parse thousands of narinfos.
	sc.Buffer(make([]byte, 0, min(len(data)+1, 64<<10)), 16<<20)
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
			ni.Signatures = append(ni.Signatures, s)
			continue
		}
		if err := setField(ni, k, v); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read narinfo: %w", err)
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	return ni, bad, nil
}

// setField sets the field k of ni as go-nix's narinfo.Parse does, which
// cannot be called per file: it allocates a 1 MiB buffer each time.
func setField(ni *NarInfo, k, v string) error {
	if strings.Contains(v, ": ") {
		return fmt.Errorf("%q: found the separator \": \" twice", k+": "+v)
	}
	var err error
	switch k {
	case "StorePath":
		ni.StorePath = v
	case "URL":
		ni.URL = v
	case "Compression":
		ni.Compression = v
	case "FileHash":
		ni.FileHash, err = nixhash.ParseAny(v, nil)
	case "FileSize":
		ni.FileSize, err = strconv.ParseUint(v, 10, 0)
	case "NarHash":
		ni.NarHash, err = nixhash.ParseAny(v, nil)
	case "NarSize":
		ni.NarSize, err = strconv.ParseUint(v, 10, 0)
	case "References":
		// Nix tokenizes on runs of spaces.
		ni.References = append(ni.References, strings.Fields(v)...)
	case "Deriver":
		if v != "unknown-deriver" {
			ni.Deriver = v
		}
	case "System":
		ni.System = v
	case "CA":
		ni.CA = v
	}
	if err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	return nil
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
