package narinfo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"
)

// ContentAddressed reports whether ni's CA field proves its store path: the
// path computed from the content address, name and references is the
// narinfo's StorePath (Nix's ValidPathInfo::isContentAddressed). Nix
// substitutes such a path without a trusted signature, even with
// require-sigs (checked with Nix 2.8). It does not check that the NAR has
// that content: verify's NarHash check covers "fixed:r:sha256:", whose hash
// is the NarHash.
func ContentAddressed(ni *NarInfo, storeDir string) (bool, error) {
	if ni.CA == "" {
		return false, nil
	}
	p, err := caStorePath(ni, strings.TrimRight(storeDir, "/"))
	if err != nil {
		return false, err
	}
	return p == ni.StorePath, nil
}

func caStorePath(ni *NarInfo, storeDir string) (string, error) {
	base := path.Base(ni.StorePath)
	if err := CheckBaseName(base); err != nil {
		return "", fmt.Errorf("CA: StorePath: %w", err)
	}
	name := base[hashLen+1:]
	var refs []string
	self := false
	for _, r := range ni.References {
		if r == base {
			self = true
			continue
		}
		refs = append(refs, storeDir+"/"+r)
	}
	sort.Strings(refs)

	ca, err := parseCA(ni.CA)
	if err != nil {
		return "", fmt.Errorf("CA: %w", err)
	}
	h := ca.hash
	base16 := h.Format(nixhash.Base16, true)

	var typ, inner string
	switch {
	case ca.text:
		if self {
			return "", errors.New("CA: a text path cannot refer to itself")
		}
		typ, inner = makeType("text", refs, false), base16
	case ca.recursive && h.Algo() == nixhash.SHA256:
		typ, inner = makeType("source", refs, self), base16
	default:
		if len(refs) > 0 || self {
			return "", errors.New("CA: a flat or non-sha256 fixed-output path cannot have references")
		}
		prefix := ""
		if ca.recursive {
			prefix = "r:"
		}
		s := sha256.Sum256([]byte("fixed:out:" + prefix + base16 + ":"))
		typ, inner = "output:out", "sha256:"+hex.EncodeToString(s[:])
	}
	s := sha256.Sum256([]byte(typ + ":" + inner + ":" + storeDir + ":" + name))
	return storeDir + "/" + nixbase32.EncodeToString(nixhash.CompressHash(s[:], 20)) + "-" + name, nil
}

func makeType(typ string, refs []string, self bool) string {
	for _, r := range refs {
		typ += ":" + r
	}
	if self {
		typ += ":self"
	}
	return typ
}
