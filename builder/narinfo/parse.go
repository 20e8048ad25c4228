// Package narinfo reads narinfo files as Nix does and computes what Nix
// derives from them: the fingerprint that signatures sign, and the store
// path a content address proves. The NarInfo type and its String method are
// go-nix's; parsing is Nix's own (src/libstore/nar-info.cc), accepting and
// rejecting what every supported Nix version does.
package narinfo

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"
)

// NarInfo is go-nix's narinfo, whose String method writes Nix's field order.
type NarInfo = narinfo.NarInfo

// MaxSize is the largest narinfo read. Nix writes a few hundred bytes plus
// about 60 per reference; 1 MiB holds more than 15000 references, and keeps
// a hostile cache's huge file from being read whole.
const MaxSize = 1 << 20

// ErrTooLarge is returned (wrapped) for a narinfo larger than MaxSize.
var ErrTooLarge = fmt.Errorf("larger than %d bytes", MaxSize)

// ReadAll reads a narinfo from r, up to MaxSize bytes.
func ReadAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, ErrTooLarge
	}
	return data, nil
}

// Parse parses a narinfo as Nix's parser does, rejecting what Nix 2.8 or
// any later supported version rejects:
//
//   - A line is "Key:" then one byte Nix skips (meant to be a space) and
//     the value up to "\n". Every line, the last included, ends in "\n"; a
//     "\r" stays in the value. The key runs to the first ":", across line
//     ends: a line without one merges with the next, and an empty line eats
//     the line after it.
//   - Unknown keys are skipped. A known key given twice replaces the first
//     value, except that a second non-empty References or CA is an error.
//   - StorePath, NarHash, URL and a non-zero NarSize are required.
//     Compression defaults to "bzip2".
//   - StorePath is an absolute path, cleaned as Nix does (ni.StorePath is
//     the clean form); whether it is in the right store directory is for
//     the caller to check, who knows that directory. References and Deriver
//     are store path base names; "unknown-deriver" means none.
//   - Hashes are algo:hash in base16, nix32 or base64, or SRI; sizes are
//     decimal, an optional "+" allowed.
//
// A Sig is "name:base64" (Nix 2.34 refuses the narinfo otherwise); those
// go-nix cannot parse (not an Ed25519 signature: Nix only ever finds them
// invalid) are returned in bad.
// Errors name the line and the key, never the value.
func Parse(data []byte) (ni *NarInfo, bad []string, err error) {
	if len(data) > MaxSize {
		return nil, nil, ErrTooLarge
	}
	s := string(data)
	ni = &NarInfo{}
	var havePath, haveNarHash, haveCA bool
	for pos, line := 0, 1; pos < len(s); line++ {
		colon := strings.IndexByte(s[pos:], ':')
		if colon < 0 {
			return nil, nil, fmt.Errorf("line %d: no \"Key: value\"", line)
		}
		colon += pos
		key := s[pos:colon]
		if colon+2 > len(s) {
			return nil, nil, fmt.Errorf("line %d: no end of line", line)
		}
		eol := strings.IndexByte(s[colon+2:], '\n')
		if eol < 0 {
			return nil, nil, fmt.Errorf("line %d: no end of line", line)
		}
		eol += colon + 2
		value := s[colon+2 : eol]
		pos = eol + 1

		if key == "Sig" {
			if err := checkSig(value); err != nil {
				return nil, nil, fmt.Errorf("line %d: Sig: %w", line, err)
			}
			sig, err := signature.ParseSignature(value)
			if err != nil {
				bad = append(bad, value)
			} else {
				ni.Signatures = append(ni.Signatures, sig)
			}
			continue
		}
		if key == "CA" && haveCA {
			return nil, nil, fmt.Errorf("line %d: a second CA", line)
		}
		if key == "References" && len(ni.References) > 0 {
			return nil, nil, fmt.Errorf("line %d: a second References", line)
		}
		if err := setField(ni, key, value); err != nil {
			return nil, nil, fmt.Errorf("line %d: %s: %w", line, key, err)
		}
		switch key {
		case "StorePath":
			havePath = true
		case "NarHash":
			haveNarHash = true
		case "CA":
			haveCA = value != ""
		}
	}
	switch {
	case !havePath:
		return nil, nil, errors.New("no StorePath")
	case !haveNarHash:
		return nil, nil, errors.New("no NarHash")
	case ni.URL == "":
		return nil, nil, errors.New("no URL")
	case ni.NarSize == 0:
		return nil, nil, errors.New("no NarSize, or NarSize 0")
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	return ni, bad, nil
}

// setField sets the field key of ni to value, as Nix reads it; unknown keys
// are ignored.
func setField(ni *NarInfo, key, value string) error {
	var err error
	switch key {
	case "StorePath":
		if !strings.HasPrefix(value, "/") {
			return errors.New("not an absolute path")
		}
		p := path.Clean(value)
		if err := CheckBaseName(path.Base(p)); err != nil {
			return err
		}
		ni.StorePath = p
	case "URL":
		ni.URL = value
	case "Compression":
		ni.Compression = value
	case "FileHash":
		ni.FileHash, err = ParseHash(value)
	case "FileSize":
		ni.FileSize, err = parseSize(value)
	case "NarHash":
		ni.NarHash, err = ParseHash(value)
	case "NarSize":
		ni.NarSize, err = parseSize(value)
	case "References":
		// Nix splits on spaces (only), skipping empty tokens.
		for _, r := range strings.Split(value, " ") {
			if r == "" {
				continue
			}
			if err := CheckBaseName(r); err != nil {
				return err
			}
			ni.References = append(ni.References, r)
		}
	case "Deriver":
		if value == "unknown-deriver" {
			break
		}
		if err := CheckBaseName(value); err != nil {
			return err
		}
		ni.Deriver = value
	case "System":
		ni.System = value
	case "CA":
		if value != "" {
			_, err = parseCA(value)
		}
		ni.CA = value
	}
	return err
}

// parseSize parses a size as Nix's string2Int<uint64_t> does: decimal
// digits, one leading "+" allowed, no sign "-", no spaces, no overflow.
func parseSize(s string) (uint64, error) {
	digits := strings.TrimPrefix(s, "+")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, errors.New("not a decimal number")
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// hashLen is the length of a store path's hash part; MaxNameLen the
// longest name after it (Nix's StorePath::HashLen and MaxPathLen).
const (
	hashLen    = 32
	MaxNameLen = 211
)

// CheckBaseName checks a store path's base name as Nix's StorePath does:
// 32 nix32 characters, then (after one byte Nix does not look at, meant to
// be "-") a name of at most 211 characters from [A-Za-z0-9+-._?=] that is
// not "." or ".." and does not start with ".-" or "..-" (refused since Nix
// 2.2x; 2.8 took them).
func CheckBaseName(base string) error {
	if len(base) < hashLen+1 {
		return errors.New("store path base name too short")
	}
	for i := 0; i < hashLen; i++ {
		if !nixbase32.Is(base[i]) {
			return errors.New("store path hash part is not nix32")
		}
	}
	name := base[hashLen+1:]
	switch {
	case name == "":
		return errors.New("store path name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("store path name longer than %d characters", MaxNameLen)
	case name == "." || name == ".." || strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-"):
		return errors.New("store path name is \".\" or \"..\", or starts with \".-\" or \"..-\"")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return errors.New("store path name has a character Nix does not allow")
		}
	}
	return nil
}

// ParseHash parses a narinfo hash as Nix's Hash::parseAnyPrefixed does:
// "algo:" then base16, nix32 or base64 (told apart by length), or SRI
// "algo-base64", for md5, sha1, sha256 or sha512.
func ParseHash(s string) (*nixhash.HashWithEncoding, error) {
	name, rest, ok := strings.Cut(s, ":")
	sri := false
	if !ok {
		if name, rest, ok = strings.Cut(s, "-"); !ok {
			return nil, errors.New("hash has no algorithm")
		}
		sri = true
	}
	algo, err := nixhash.ParseAlgorithm(name)
	if err != nil {
		return nil, errors.New("unknown hash algorithm")
	}
	digest, enc, err := decodeHash(rest, algo.Func().Size(), sri)
	if err != nil {
		return nil, err
	}
	return nixhash.NewHashWithEncoding(algo, digest, enc, true)
}

// decodeHash decodes a hash of size bytes as Nix's Hash constructor does.
func decodeHash(s string, size int, sri bool) ([]byte, nixhash.Encoding, error) {
	switch {
	case !sri && len(s) == 2*size:
		d, err := hex.DecodeString(s)
		if err != nil {
			return nil, 0, errors.New("invalid base-16 hash")
		}
		return d, nixhash.Base16, nil
	case !sri && len(s) == nixbase32.EncodedLen(size):
		d, err := nixbase32.DecodeString(s)
		if err != nil {
			return nil, 0, errors.New("invalid nix32 hash")
		}
		return d, nixhash.NixBase32, nil
	case sri || len(s) == base64.StdEncoding.EncodedLen(size):
		d, err := decodeBase64(s)
		if err != nil || len(d) != size {
			return nil, 0, errors.New("invalid base-64 hash")
		}
		enc := nixhash.Base64
		if sri {
			enc = nixhash.SRI
		}
		return d, enc, nil
	}
	return nil, 0, errors.New("hash has the wrong length for its algorithm")
}

// decodeBase64 decodes base64 as Nix does: up to the first "=", whatever
// follows; "\n" skipped; no check of the bits left over.
func decodeBase64(s string) ([]byte, error) {
	var out []byte
	var d, bits uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			break
		}
		if c == '\n' {
			continue
		}
		v := strings.IndexByte(base64Chars, c)
		if v < 0 {
			return nil, errors.New("invalid base-64 character")
		}
		d = d<<6 | uint(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(d>>bits))
		}
	}
	return out, nil
}

const base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// checkSig checks a signature as Nix 2.34's Signature::parse does: a
// non-empty key name, ":", and base64 of at least one byte.
func checkSig(s string) error {
	name, sig, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return errors.New("not name:signature")
	}
	if d, err := decodeBase64(sig); err != nil || len(d) == 0 {
		return errors.New("signature is not base64")
	}
	return nil
}

// contentAddress is a parsed CA field.
type contentAddress struct {
	text, recursive bool
	hash            *nixhash.Hash
}

// parseCA parses a content address as Nix's ContentAddress parser does:
// "text:sha256:HASH", or "fixed:" then an optional "r:" then "algo:HASH",
// the hash in base16, nix32 or base64 (not SRI).
func parseCA(ca string) (contentAddress, error) {
	var c contentAddress
	method, rest, ok := strings.Cut(ca, ":")
	if !ok {
		return c, errors.New("not a content address")
	}
	switch method {
	case "text":
		c.text = true
	case "fixed":
		rest, c.recursive = strings.CutPrefix(rest, "r:")
	default:
		return c, errors.New("unknown content address method")
	}
	name, h, ok := strings.Cut(rest, ":")
	if !ok {
		return c, errors.New("content address without algo:hash")
	}
	algo, err := nixhash.ParseAlgorithm(name)
	if err != nil {
		return c, errors.New("unknown hash algorithm")
	}
	if c.text && algo != nixhash.SHA256 {
		// Nix 2.8 refuses it; later versions take any algorithm.
		return c, errors.New("text content address not sha256")
	}
	digest, _, err := decodeHash(h, algo.Func().Size(), false)
	if err != nil {
		return c, err
	}
	c.hash, err = nixhash.NewHash(algo, digest)
	return c, err
}

// HashPart is the hash part of a store path or base name, its first 32
// characters as Nix takes them (the "-" after them is not checked): the
// narinfo of /nix/store/<hash>-<name> is <hash>.narinfo.
func HashPart(storePath string) string {
	base := path.Base(storePath)
	if len(base) > hashLen {
		return base[:hashLen]
	}
	if i := strings.IndexByte(base, '-'); i > 0 {
		return base[:i]
	}
	return base
}
