package narinfo

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
)

// Fingerprint returns the string Nix signs for a narinfo
// (ValidPathInfo::fingerprint):
//
//	1;<store path>;<NarHash as sha256:nix32>;<NarSize>;<references, full paths, sorted, comma-joined>
//
// go-nix's NarInfo.Fingerprint keeps the references in the order given and
// assumes /nix/store; Nix sorts them and uses its store directory. The
// store path must be in storeDir, as Nix refuses narinfos for another store.
func Fingerprint(ni *NarInfo, storeDir string) (string, error) {
	storeDir = strings.TrimRight(storeDir, "/")
	if ni.StorePath == "" {
		return "", errors.New("fingerprint: no StorePath")
	}
	if path.Dir(ni.StorePath) != storeDir {
		return "", fmt.Errorf("fingerprint: %s is not in the store directory %s", ni.StorePath, storeDir)
	}
	if ni.NarHash == nil {
		return "", fmt.Errorf("fingerprint of %s: no NarHash", ni.StorePath)
	}
	if ni.NarSize == 0 {
		// Nix: "cannot calculate fingerprint of path '…' because its size is not known".
		return "", fmt.Errorf("fingerprint of %s: no NarSize", ni.StorePath)
	}
	refs := make([]string, 0, len(ni.References))
	for _, r := range ni.References {
		if r == "" || strings.Contains(r, "/") {
			return "", fmt.Errorf("fingerprint of %s: bad reference %q", ni.StorePath, r)
		}
		refs = append(refs, storeDir+"/"+r)
	}
	sort.Strings(refs)
	refs = slices.Compact(refs) // a StorePathSet in Nix
	return "1;" + ni.StorePath + ";" + ni.NarHash.Format(nixhash.NixBase32, true) + ";" +
		strconv.FormatUint(ni.NarSize, 10) + ";" + strings.Join(refs, ","), nil
}
