// Package sign makes and checks the ed25519 signatures of narinfo files
// exactly as Nix does, handles keys in Nix's formats, and signs every
// narinfo of a flat-file binary cache in place.
package sign

import (
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/nix-community/go-nix/pkg/narinfo/signature"
)

// Sign returns key's signature of ni.
func Sign(ni *narinfo.NarInfo, key signature.SecretKey, storeDir string) (signature.Signature, error) {
	fp, err := narinfo.Fingerprint(ni, storeDir)
	if err != nil {
		return signature.Signature{}, err
	}
	// ed25519 ignores rand: signatures are deterministic, like Nix's.
	s, err := key.Sign(nil, fp)
	if err != nil {
		return signature.Signature{}, fmt.Errorf("sign %s: %w", ni.StorePath, err)
	}
	return s, nil
}

// Valid returns the signatures of ni that one of keys verifies (matching key
// name and valid ed25519 signature of the fingerprint). Nix accepts a path
// when this is not empty (with require-sigs and the keys trusted).
func Valid(ni *narinfo.NarInfo, keys []signature.PublicKey, storeDir string) ([]signature.Signature, error) {
	fp, err := narinfo.Fingerprint(ni, storeDir)
	if err != nil {
		return nil, err
	}
	var ok []signature.Signature
	for _, s := range ni.Signatures {
		for _, k := range keys {
			if k.Verify(fp, s) {
				ok = append(ok, s)
				break
			}
		}
	}
	return ok, nil
}

// KeyName is the name of a secret key (the part before ':').
func KeyName(key signature.SecretKey) string { return key.ToPublicKey().Name }

// LoadSecretKeyFile reads a secret key file as `nix-store
// --generate-binary-cache-key` writes it: "name:base64(64 bytes)".
func LoadSecretKeyFile(name string) (signature.SecretKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return signature.SecretKey{}, fmt.Errorf("read secret key: %w", err)
	}
	k, err := signature.LoadSecretKey(strings.TrimSpace(string(data)))
	if err != nil {
		// Never echo the file's contents: it is a secret.
		return signature.SecretKey{}, fmt.Errorf("%s: %w", name, err)
	}
	return k, nil
}

// ParsePublicKey accepts a public key as Nix's trusted-public-keys lists it
// ("name:base64(32 bytes)"), or the name of a file holding one (as
// `nix-store --generate-binary-cache-key` writes it). Its errors never
// carry key material: a secret key given by mistake must not end up in a
// CI log, so an argument is named by what precedes its first ':' at most.
func ParsePublicKey(s string) (signature.PublicKey, error) {
	k, err := signature.ParsePublicKey(strings.TrimSpace(s))
	if err == nil {
		return k, nil
	}
	shown := s
	if name, _, ok := strings.Cut(s, ":"); ok {
		shown = name + ":…"
	}
	if isSecretKey(s) {
		return signature.PublicKey{}, fmt.Errorf("public key %q is a secret key, not a public key (name:base64 of 32 bytes, or a file holding one)", shown)
	}
	data, ferr := os.ReadFile(s)
	if ferr != nil {
		// Not the *PathError itself: its path is the argument.
		if pe, ok := ferr.(*fs.PathError); ok {
			ferr = pe.Err
		}
		return signature.PublicKey{}, fmt.Errorf("public key %q: neither a key (%v) nor a readable file (%v)", shown, err, ferr)
	}
	k, err = signature.ParsePublicKey(strings.TrimSpace(string(data)))
	if err != nil {
		if isSecretKey(string(data)) {
			return signature.PublicKey{}, fmt.Errorf("public key file %s holds a secret key: give the public key file", s)
		}
		return signature.PublicKey{}, fmt.Errorf("public key file %s: %w", s, err)
	}
	return k, nil
}

func isSecretKey(s string) bool {
	_, err := signature.LoadSecretKey(strings.TrimSpace(s))
	return err == nil
}

// GenerateKey makes a new key pair named name, in Nix's formats.
func GenerateKey(name string) (secret, public string, err error) {
	if name == "" || strings.Contains(name, ":") || strings.ContainsAny(name, " \t\n") {
		return "", "", fmt.Errorf("key name %q: must be non-empty, without ':' or white space", name)
	}
	sk, pk, err := signature.GenerateKeypair(name, nil)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return sk.String(), pk.String(), nil
}
