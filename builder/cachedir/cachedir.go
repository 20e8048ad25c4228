// Package cachedir is the on-disk layout of a flat-file Nix binary cache,
// shared by every command that reads or writes one: the directories Nix
// expects, nix-cache-info, where each file of a store path lives, the lock
// that keeps writers apart, atomic and durable writes, and opening files
// that may be FIFOs without hanging.
package cachedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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

// ReadInfo reads the nix-cache-info of the cache at dir; ok is false when
// there is none.
func ReadInfo(dir string) (info Info, ok bool, err error) {
	data, err := ReadRegular(filepath.Join(dir, InfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, fmt.Errorf("read %s: %w", InfoFile, err)
	}
	return ParseInfo(data), true, nil
}

// Init creates the cache layout and nix-cache-info (durably); on an
// existing cache it checks that the store directory matches.
func Init(dir string, info Info) error {
	for _, d := range Dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create cache: %w", err)
		}
	}
	old, ok, err := ReadInfo(dir)
	if err != nil {
		return err
	}
	if ok {
		if old.StoreDir != info.StoreDir {
			return fmt.Errorf("%s: the cache is for store %q, not %q", filepath.Join(dir, InfoFile), old.StoreDir, info.StoreDir)
		}
		return nil
	}
	return WriteFile(filepath.Join(dir, InfoFile), info.Bytes(), 0o644)
}

// ResolveStoreDir picks the store directory of the cache at dir: the one
// its nix-cache-info names, which flag (when not "") must agree with; else
// flag; else /nix/store.
func ResolveStoreDir(dir, flag string) (string, error) {
	flag = strings.TrimRight(flag, "/")
	info, _, err := ReadInfo(dir)
	if err != nil {
		return "", err
	}
	switch {
	case info.StoreDir != "" && flag != "" && info.StoreDir != flag:
		return "", fmt.Errorf("%s: the cache is for store %s, not %s", filepath.Join(dir, InfoFile), info.StoreDir, flag)
	case info.StoreDir != "":
		return info.StoreDir, nil
	case flag != "":
		return flag, nil
	}
	return DefaultStoreDir, nil
}

// NarInfoPath is the narinfo file of a store path in the cache dir.
func NarInfoPath(dir, storePath string) string {
	return filepath.Join(dir, narinfo.HashPart(storePath)+".narinfo")
}

// ListingPath is the .ls listing of a store path in the cache dir.
func ListingPath(dir, storePath string) string {
	return filepath.Join(dir, narinfo.HashPart(storePath)+".ls")
}

// NarInfoFiles lists the narinfo files at the top of the cache dir, sorted.
func NarInfoFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".narinfo") && !strings.HasPrefix(n, ".") && !e.IsDir() {
			names = append(names, filepath.Join(dir, n))
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadNarInfo reads and parses (as Nix does: narinfo.Parse) the narinfo
// file name, returning its bytes too; a parse error names the file.
func ReadNarInfo(name string) ([]byte, *narinfo.NarInfo, error) {
	f, err := OpenRegular(name)
	if err != nil {
		return nil, nil, err
	}
	data, err := narinfo.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	ni, _, err := narinfo.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return data, ni, nil
}

// LogDir holds build logs: log/<derivation base name>, raw, as Nix's
// `nix store copy-log` writes them and `nix log` reads them.
const LogDir = "log"

// LogPath is the build log of a derivation (a store path or base name) in
// the cache dir.
func LogPath(dir, drv string) string {
	return filepath.Join(dir, LogDir, filepath.Base(drv))
}

// LogName reports whether name is one Nix reads a build log under: a
// derivation's base name. Anything else in log/ is no log of this cache.
func LogName(name string) bool {
	return strings.HasSuffix(name, ".drv") && narinfo.CheckBaseName(name) == nil
}

// LogFiles lists the names of the regular files in the cache's log/
// (temporary files aside); a cache without log/ has none.
func LogFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, LogDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, LogDir), err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), TmpPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
