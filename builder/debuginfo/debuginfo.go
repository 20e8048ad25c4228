// Package debuginfo finds the separate debug info files of a NAR and makes
// the debuginfo/ index entries that Nix writes with ?index-debug-info=1,
// which debuginfod servers for Nix (dwarffs, nixseparatedebuginfod) read.
//
// What Nix 2.8 does (binary-cache-store.cc, checked against `nix copy`):
// for every regular file lib/debug/.build-id/XX/YYYY….debug of the NAR,
// with XX matching [0-9a-f]{2} and a directory, and the file name matching
// [0-9a-f]{38}\.debug (symlinks are not followed), it writes the file
// debuginfo/XXYYYY….debug (the ".debug" stays in the name) holding
//
//	{"archive":"../<narinfo URL>","member":"lib/debug/.build-id/XX/YYYY….debug"}
//
// compact, keys sorted, no final newline, and leaves an existing file alone.
package debuginfo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
)

// BuildIDDir is where the debug info files live inside a store path.
const BuildIDDir = "lib/debug/.build-id"

var (
	dirRe  = regexp.MustCompile(`^[0-9a-f]{2}$`)
	fileRe = regexp.MustCompile(`^[0-9a-f]{38}\.debug$`)
)

// File is one debug info file of a NAR.
type File struct {
	Key    string // the index file's name inside debuginfo/: XXYYYY….debug
	Member string // its path inside the NAR, without a leading slash
}

// Find returns the debug info files of the NAR whose root is root, in NAR
// order.
func Find(root *listing.Node) []File {
	dir := root.Lookup(BuildIDDir)
	if dir == nil || dir.Type != nar.TypeDirectory {
		return nil
	}
	var out []File
	for _, e1 := range dir.Entries {
		if e1.Node.Type != nar.TypeDirectory || !dirRe.MatchString(e1.Name) {
			continue
		}
		for _, e2 := range e1.Node.Entries {
			if f, ok := FileAt(e1.Name, e2.Name); ok && e2.Node.Type == nar.TypeRegular {
				out = append(out, f)
			}
		}
	}
	return out
}

// FileAt is the debug info file of the file name in the directory dir of
// BuildIDDir, if their names are those of one (XX and YYYY….debug).
func FileAt(dir, name string) (File, bool) {
	if !dirRe.MatchString(dir) || !fileRe.MatchString(name) {
		return File{}, false
	}
	return File{Key: dir + name, Member: BuildIDDir + "/" + dir + "/" + name}, true
}

// JSON is the index entry of f, for a NAR at narURL (the narinfo's URL,
// relative to the cache).
func JSON(f File, narURL string) []byte {
	b := []byte(`{"archive":`)
	b = listing.AppendString(b, "../"+narURL)
	b = append(b, `,"member":`...)
	b = listing.AppendString(b, f.Member)
	return append(b, '}')
}

// Parse reads the index entry name (its file name in debuginfo/) holding
// data, as JSON writes it: an object of two strings, "archive", "../" and
// the URL of a NAR (cachedir.NarFile), and "member", the debug info file
// whose key is name. It returns that file and the URL. Errors say what is
// wrong, never what the entry holds.
func Parse(name string, data []byte) (File, string, error) {
	var v struct {
		Archive *string `json:"archive"`
		Member  *string `json:"member"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || dec.More() || v.Archive == nil || v.Member == nil {
		return File{}, "", errors.New(`not a debuginfo entry {"archive":…,"member":…}`)
	}
	url, ok := strings.CutPrefix(*v.Archive, "../")
	if !ok {
		return File{}, "", errors.New(`its archive is not "../" and a NAR's URL`)
	}
	if _, err := cachedir.NarFile(url); err != nil {
		return File{}, "", fmt.Errorf("its archive: %w", err)
	}
	dir, file, _ := strings.Cut(strings.TrimPrefix(*v.Member, BuildIDDir+"/"), "/")
	f, ok := FileAt(dir, file)
	if !ok || f.Member != *v.Member {
		return File{}, "", fmt.Errorf("its member is not a file of %s", BuildIDDir)
	}
	if f.Key != name {
		return File{}, "", fmt.Errorf("its member is the debug info of %s, not of %s", f.Key, name)
	}
	return f, url, nil
}
