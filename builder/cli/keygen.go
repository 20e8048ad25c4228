package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mkbinarycache/mkbinarycache/builder/sign"
)

const keygenUsage = `Usage: mkbinarycache keygen NAME [--secret-key-file FILE] [--public-key-file FILE]

Makes a new signing key pair named NAME (by convention the cache's host name
and a number: cache.example.org-1), in the formats of nix-store
--generate-binary-cache-key. Each key goes to its file, or else to standard
output (secret first). An existing file is never overwritten; the secret key
file is created readable by its owner only.

Options:
`

func runKeygen(_ context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache keygen", keygenUsage, env)
	secFile := fs.String("secret-key-file", "", "write the secret key to `FILE` (mode 0600)")
	pubFile := fs.String("public-key-file", "", "write the public key to `FILE`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("keygen: give exactly one key name")
	}
	if *secFile != "" && *secFile == *pubFile {
		return usagef("keygen: the secret and public key files must differ")
	}
	sec, pub, err := sign.GenerateKey(pos[0])
	if err != nil {
		return usageError{err}
	}
	if *secFile != "" {
		if err := createFile(*secFile, sec, 0o600); err != nil {
			return err
		}
	}
	if *pubFile != "" {
		if err := createFile(*pubFile, pub, 0o644); err != nil {
			if *secFile != "" {
				os.Remove(*secFile) // do not leave a secret key without its public half
			}
			return err
		}
	}
	if *secFile == "" {
		fmt.Fprintln(env.Stdout, sec)
	}
	if *pubFile == "" {
		fmt.Fprintln(env.Stdout, pub)
	}
	return nil
}

// createFile writes a new file (no final newline, like Nix), refusing to
// replace one.
func createFile(name, data string, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting a key file", name)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
