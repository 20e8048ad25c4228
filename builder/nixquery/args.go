package nixquery

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mkbinarycache/mkbinarycache/builder/closure"
)

// maxLinks bounds the symbolic links followed from one argument, as the
// kernel's ELOOP does.
const maxLinks = 40

// StorePaths resolves command-line arguments to store paths of storeDir:
// each is a store path (/nix/store/…-name) or a symbolic link leading to
// one, such as nix-build's result. Anything else is an error naming the
// argument: Nix would take it for an installable, and evaluate a flake
// found in a parent directory.
func StorePaths(storeDir string, args []string) ([]string, error) {
	v := closure.Validator{StoreDir: storeDir}
	out := make([]string, 0, len(args))
	for _, a := range args {
		p, err := resolve(v, a)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func resolve(v closure.Validator, arg string) (string, error) {
	p := arg
	for range maxLinks {
		if v.CheckPath(p) == nil {
			return p, nil
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			// Relative to the link's real directory, as the kernel reads it.
			dir, err := filepath.EvalSymlinks(filepath.Dir(p))
			if err != nil {
				break
			}
			target = filepath.Join(dir, target)
		}
		p = target
	}
	if err := v.CheckPath(p); err != nil {
		return "", fmt.Errorf("%q is not a store path of %s, nor a symbolic link to one", arg, v.StoreDir)
	}
	return p, nil
}
