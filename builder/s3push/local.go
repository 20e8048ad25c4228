package s3push

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// The Content-Types Nix's own binary cache stores give each kind of file
// (binary-cache-store.cc): a CDN or Nix itself may go by them.
const (
	typeNarInfo   = "text/x-nix-narinfo"
	typeCacheInfo = "text/x-nix-cache-info"
	typeNAR       = "application/x-nix-nar"
	typeJSON      = "application/json"          // .ls listings and debuginfo entries
	typeLog       = "text/plain; charset=utf-8" // build logs, as nix store copy-log
)

// object is one file of the cache to publish.
type object struct {
	key         string // relative to the target's prefix
	file        string // the local file, or "" when data holds it
	data        []byte
	size        int64
	contentType string
	// md5 is the hex MD5 of files that can change under the same key
	// (narinfos gain signatures); "" for NARs, whose key is their hash.
	md5 string
}

func smallObject(key, contentType string, data []byte) *object {
	sum := md5.Sum(data)
	return &object{key: key, data: data, size: int64(len(data)), contentType: contentType, md5: hex.EncodeToString(sum[:])}
}

// storePath is one narinfo of the cache and what it needs published first.
type storePath struct {
	hash    string // the hash part, the narinfo's name
	narinfo *object
	nar     *object           // shared by narinfos naming the same NAR
	listing *object           // nil if the cache has none
	refs    []string          // hash parts
	refBase map[string]string // hash part -> base name, of refs
}

// localCache is what a cache directory holds to publish.
type localCache struct {
	info  cachedir.Info
	infoO *object
	paths map[string]*storePath
	nars  []*object // one per key
	debug []*object
	logs  []*object
}

// errNotCache says a directory is not a binary cache.
var errNotCache = errors.New("not a binary cache")

// readCache reads the cache at dir: every narinfo (whole, so that a
// signature added while the push runs cannot tear one), the NARs they
// name (stat only), the listings and the debuginfo entries. A narinfo
// whose NAR is missing or of another size is an error: publishing it
// would break the bucket.
func readCache(dir string) (*localCache, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w: not a directory", dir, errNotCache)
	}
	// Read once: parsed here, published as read.
	infoData, err := cachedir.ReadRegular(filepath.Join(dir, cachedir.InfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: it has no %s", dir, errNotCache, cachedir.InfoFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", dir, cachedir.InfoFile, err)
	}
	c := &localCache{info: cachedir.ParseInfo(infoData), infoO: smallObject(cachedir.InfoFile, typeCacheInfo, infoData), paths: map[string]*storePath{}}
	names, err := cachedir.NarInfoFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	nars := map[string]*object{}
	for _, name := range names {
		p, err := readPath(dir, name, nars, &c.nars)
		if err != nil {
			return nil, err
		}
		c.paths[p.hash] = p
	}
	if c.debug, err = readDebugInfo(dir); err != nil {
		return nil, err
	}
	c.logs, err = readLogs(dir)
	return c, err
}

// readLogs lists the build logs (stat only): log/<drv>, uploaded raw.
func readLogs(dir string) ([]*object, error) {
	names, err := cachedir.LogFiles(dir)
	if err != nil {
		return nil, err
	}
	var objs []*object
	for _, n := range names {
		if !cachedir.LogName(n) {
			continue // not a derivation's: verify reports it
		}
		file := filepath.Join(dir, cachedir.LogDir, n)
		fi, err := os.Lstat(file)
		if err != nil {
			return nil, err
		}
		objs = append(objs, &object{key: cachedir.LogDir + "/" + n, file: file, size: fi.Size(), contentType: typeLog})
	}
	return objs, nil
}

func readPath(dir, name string, nars map[string]*object, order *[]*object) (*storePath, error) {
	data, ni, err := cachedir.ReadNarInfo(name)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(name)
	hash := strings.TrimSuffix(base, ".narinfo")
	if narinfo.HashPart(ni.StorePath) != hash {
		return nil, fmt.Errorf("%s: StorePath %s does not belong to this file name", name, ni.StorePath)
	}
	p := &storePath{hash: hash, narinfo: smallObject(base, typeNarInfo, data), refBase: map[string]string{}}
	for _, r := range ni.References {
		p.refs = append(p.refs, narinfo.HashPart(r))
		p.refBase[narinfo.HashPart(r)] = r
	}
	u := ni.URL
	if u == "" || strings.Contains(u, "://") || strings.ContainsAny(u, "?#\\") || path.IsAbs(u) ||
		path.Clean(u) != u || u == ".." || strings.HasPrefix(u, "../") {
		return nil, fmt.Errorf("%s: URL %q is not a file of the cache", name, u)
	}
	nar := nars[u]
	if nar == nil {
		file := filepath.Join(dir, filepath.FromSlash(u))
		fi, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("%s: its NAR: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: its NAR %s is %s", name, file, cachedir.DescribeMode(fi.Mode()))
		}
		nar = &object{key: u, file: file, size: fi.Size(), contentType: typeNAR}
		nars[u] = nar
		*order = append(*order, nar)
	}
	if ni.FileSize != 0 && uint64(nar.size) != ni.FileSize {
		return nil, fmt.Errorf("%s: its NAR %s has %d bytes, FileSize says %d", name, nar.file, nar.size, ni.FileSize)
	}
	p.nar = nar
	ls := filepath.Join(dir, hash+".ls")
	switch data, err := cachedir.ReadRegular(ls); {
	case err == nil:
		p.listing = smallObject(hash+".ls", typeJSON, data)
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	return p, nil
}

// readDebugInfo reads the debuginfo/ index entries.
func readDebugInfo(dir string) ([]*object, error) {
	d := filepath.Join(dir, "debuginfo")
	entries, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var objs []*object
	for _, e := range entries {
		// Temporary files of a running or killed writer start with a dot.
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		data, err := cachedir.ReadRegular(filepath.Join(d, e.Name()))
		if err != nil {
			return nil, err
		}
		objs = append(objs, smallObject("debuginfo/"+e.Name(), typeJSON, data))
	}
	return objs, nil
}
