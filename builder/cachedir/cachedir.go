// Package cachedir is the on-disk layout of a flat-file Nix binary cache,
// shared by every command that reads or writes one: the directories Nix
// expects, nix-cache-info, where each file of a store path lives, the lock
// that keeps writers apart, atomic and durable writes, and opening files
// that may be FIFOs without hanging.
package cachedir

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// DefaultStoreDir is the store directory of caches that do not say.
const DefaultStoreDir = "/nix/store"

// Dirs are created empty in every cache: Nix creates them when it opens a
// file:// store and fails on a read-only cache that lacks them
// (build-trace-v2 for Nix 2.35 and later, realisations before).
var Dirs = []string{"nar", "realisations", "debuginfo", "log", "build-trace-v2"}

// InfoFile is the name of the file that says which store a cache is for.
const InfoFile = "nix-cache-info"

// Info is the content of nix-cache-info.
type Info struct {
	StoreDir      string
	WantMassQuery bool
	Priority      int // 0: not given
}

// Bytes is the file as this tool writes it.
func (i Info) Bytes() []byte {
	s := "StoreDir: " + i.StoreDir + "\n"
	if i.WantMassQuery {
		s += "WantMassQuery: 1\n"
	}
	if i.Priority != 0 {
		s += "Priority: " + strconv.Itoa(i.Priority) + "\n"
	}
	return []byte(s)
}

// ParseInfo reads nix-cache-info as Nix does: "Key: value" lines, spaces
// around the value and a trailing slash of StoreDir ignored, unknown keys
// and malformed lines skipped.
func ParseInfo(data []byte) Info {
	var i Info
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "StoreDir":
			i.StoreDir = strings.TrimRight(v, "/")
		case "WantMassQuery":
			i.WantMassQuery = v == "1"
		case "Priority":
			i.Priority, _ = strconv.Atoi(v)
		}
	}
	return i
}

// ReadInfo reads the cache's nix-cache-info; ok is false when there is
// none.
func (d *Dir) ReadInfo() (info Info, ok bool, err error) {
	data, err := d.ReadFileMax(InfoFile, maxSmallFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, err
	}
	return ParseInfo(data), true, nil
}

// maxSmallFile bounds what is read whole of a file that is small in every
// real cache: nix-cache-info, a narinfo, a debuginfo entry.
const maxSmallFile = 1 << 20

// RequireInfo reads nix-cache-info, which a cache must have (ErrNotCache).
func (d *Dir) RequireInfo() (Info, error) {
	info, ok, err := d.ReadInfo()
	if err != nil {
		return Info{}, err
	}
	if !ok {
		return Info{}, fmt.Errorf("%s: %w", d.path, ErrNotCache)
	}
	return info, nil
}

// Init creates the cache layout and nix-cache-info (durably); on an
// existing cache it checks that the store directory matches. It creates
// nothing through a symlink: a layout entry that is not a real directory
// is an EntryError.
func (d *Dir) Init(info Info) error {
	if err := d.MkdirLayout(); err != nil {
		return err
	}
	old, ok, err := d.ReadInfo()
	if err != nil {
		return err
	}
	if ok {
		if old.StoreDir != info.StoreDir {
			return fmt.Errorf("%s: the cache is for store %q, not %q", d.Name(InfoFile), old.StoreDir, info.StoreDir)
		}
		return nil
	}
	return d.WriteFile(InfoFile, info.Bytes(), 0o644)
}

// ResolveStoreDir picks the store directory of the cache at path: the one
// its nix-cache-info names, which flag (when not "") must agree with; else
// flag; else /nix/store. A path that does not exist yet has no
// nix-cache-info, nor has one whose nix-cache-info is invalid.
func ResolveStoreDir(path, flag string) (string, error) {
	var info Info
	d, err := Open(path)
	switch {
	case err == nil:
		info, _, err = d.ReadInfo()
		d.Close()
		// An invalid nix-cache-info is no answer: the command that opens
		// the cache meets it and does what it does with invalid entries.
		if err != nil && !errors.Is(err, ErrInvalidEntry) {
			return "", err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	flag = strings.TrimRight(flag, "/")
	switch {
	case info.StoreDir != "" && flag != "" && info.StoreDir != flag:
		return "", fmt.Errorf("%s: the cache is for store %s, not %s", filepath.Join(path, InfoFile), info.StoreDir, flag)
	case info.StoreDir != "":
		return info.StoreDir, nil
	case flag != "":
		return flag, nil
	}
	return DefaultStoreDir, nil
}

// NarInfoName is the narinfo file of a store path, relative to the cache.
func NarInfoName(storePath string) string {
	return narinfo.HashPart(storePath) + ".narinfo"
}

// ListingName is the .ls listing of a store path, relative to the cache.
func ListingName(storePath string) string {
	return narinfo.HashPart(storePath) + ".ls"
}

// nixBase32 is the alphabet of store path hash parts.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// IsHashPart reports whether s is a store path's hash part: 32 characters
// of Nix's base-32 alphabet.
func IsHashPart(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(nixBase32, s[i]) < 0 {
			return false
		}
	}
	return true
}

// narNameRe is a NAR file's name under nar/: a hash, ".nar" and the
// compression's extension, as Nix and this tool name them.
var narNameRe = regexp.MustCompile(`^[0-9a-z]+\.nar(\.[0-9a-z]+)?$`)

// NarFile returns the file a narinfo URL names, relative to the cache: a
// NAR is a file directly under nar/, its name a hash, ".nar" and an
// optional extension. Any other URL names no file this tool reads,
// publishes or removes.
func NarFile(url string) (string, error) {
	name, ok := strings.CutPrefix(url, "nar/")
	if !ok || !narNameRe.MatchString(name) {
		return "", fmt.Errorf("URL %q does not name a NAR directly under nar/", url)
	}
	return url, nil
}

// NarInfos lists the narinfo files at the top of the cache, sorted:
// names, relative to the cache, of regular files named by a store path's
// hash part. Every other entry whose name ends in .narinfo is returned as
// an EntryError in invalid.
func (d *Dir) NarInfos() (names []string, invalid []error, err error) {
	entries, err := d.List("")
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		h, ok := strings.CutSuffix(e.Name, ".narinfo")
		if !ok {
			continue
		}
		switch {
		case !e.Type.IsRegular():
			invalid = append(invalid, d.NotRegular(e, ""))
		case !IsHashPart(h):
			invalid = append(invalid, &EntryError{Name: d.Name(e.Name), What: "not named by a store path's hash part"})
		default:
			names = append(names, e.Name)
		}
	}
	return names, invalid, nil
}

// ReadNarInfo reads the narinfo file name (relative to the cache) and
// parses it as Nix does (narinfo.Parse), returning its bytes too. What
// makes it invalid is an EntryError: not a regular file, too large, not
// parsing, a StorePath outside storeDir or not matching the file name,
// or a URL that does not name a NAR (NarFile).
func (d *Dir) ReadNarInfo(name, storeDir string) ([]byte, *narinfo.NarInfo, error) {
	data, err := d.ReadFileMax(name, narinfo.MaxSize)
	if err != nil {
		return nil, nil, err
	}
	ni, _, err := narinfo.Parse(data)
	if err != nil {
		return nil, nil, &EntryError{Name: d.Name(name), What: "does not parse: " + err.Error()}
	}
	if path.Dir(ni.StorePath) != storeDir {
		return nil, nil, &EntryError{Name: d.Name(name), What: fmt.Sprintf("StorePath %q is not in the cache's store %s", ni.StorePath, storeDir)}
	}
	if NarInfoName(ni.StorePath) != name {
		return nil, nil, &EntryError{Name: d.Name(name), What: fmt.Sprintf("StorePath %s does not match the file name", ni.StorePath)}
	}
	if _, err := NarFile(ni.URL); err != nil {
		return nil, nil, &EntryError{Name: d.Name(name), What: err.Error()}
	}
	return data, ni, nil
}

// LogDir holds build logs: log/<derivation base name>, raw, as Nix's
// `nix store copy-log` writes them and `nix log` reads them.
const LogDir = "log"

// LogFile is the build log of a derivation (a store path or base name),
// relative to the cache.
func LogFile(drv string) string {
	return LogDir + "/" + path.Base(drv)
}

// LogName reports whether name is one Nix reads a build log under: a
// derivation's base name. Anything else in log/ is no log of this cache.
func LogName(name string) bool {
	return strings.HasSuffix(name, ".drv") && narinfo.CheckBaseName(name) == nil
}

// Logs lists the build logs of the cache: the names, relative to the
// cache, of the regular files in log/ (temporary files aside); a cache
// without log/, or whose log is not a real directory (CheckLayout says
// so), has none. Every other entry of log/ is returned as an EntryError
// in invalid.
func (d *Dir) Logs() (names []string, invalid []error, err error) {
	ents, err := d.List(LogDir)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalidEntry):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	for _, e := range ents {
		if e.Type.IsRegular() {
			names = append(names, e.Rel(LogDir))
		} else {
			invalid = append(invalid, d.NotRegular(e, LogDir))
		}
	}
	return names, invalid, nil
}
