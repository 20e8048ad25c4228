package s3push

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/cachegraph"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
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
	file        string // the file, relative to the cache, or "" when data holds it
	data        []byte
	size        int64
	contentType string
	// md5 is the hex MD5 of files that can change under the same key
	// (narinfos gain signatures); "" for NARs, whose key is their hash.
	md5 string
	// want is a NAR's SHA-256 as its narinfo says (FileHash), nil if it
	// names none: checked before the NAR is uploaded.
	want []byte
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
	dir   *cachedir.Dir
	info  cachedir.Info
	infoO *object
	paths map[string]*storePath
	nars  []*object // one per key
	debug []*object
	logs  []*object
	// invalid are the entries the cache may not hold (cachedir.EntryError):
	// none is published, and the push fails once the rest is.
	invalid []error
}

// readCache reads the cache d: every valid narinfo (whole, so that a
// signature added while the push runs cannot tear one), the NARs they
// name (stat only), the listings and the debuginfo entries that parse. A
// narinfo whose NAR is missing or of another size is an error: publishing
// it would break the bucket.
func readCache(ctx context.Context, d *cachedir.Dir) (*localCache, error) {
	// Read once: parsed here, published as read.
	infoData, err := d.ReadFile(cachedir.InfoFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d.Path(), cachedir.ErrNotCache)
	}
	if err != nil {
		return nil, err
	}
	g, err := cachegraph.Load(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	c := &localCache{dir: d, info: cachedir.ParseInfo(infoData), infoO: smallObject(cachedir.InfoFile, typeCacheInfo, infoData),
		paths: map[string]*storePath{}, invalid: append(d.CheckLayout(), g.Invalid...)}
	nars := map[string]*object{}
	bad := map[string]bool{} // hash parts of invalid narinfos and of skipped paths
	for _, err := range g.Invalid {
		if rel, ok := d.Rel(err); ok {
			bad[strings.TrimSuffix(rel, ".narinfo")] = true
		}
	}
	for _, sp := range slices.Sorted(maps.Keys(g.Paths)) {
		p, err := c.readPath(g.Paths[sp], nars)
		if errors.Is(err, cachedir.ErrInvalidEntry) {
			c.invalid = append(c.invalid, err)
			bad[narinfo.HashPart(sp)] = true
			continue
		}
		if err != nil {
			return nil, err
		}
		c.paths[p.hash] = p
	}
	c.dropReferrers(bad)
	debug, invalid, err := cachegraph.LoadDebugInfo(d)
	if err != nil {
		return nil, err
	}
	c.invalid = append(c.invalid, invalid...)
	for _, e := range debug {
		c.debug = append(c.debug, smallObject("debuginfo/"+e.Name, typeJSON, e.Raw))
	}
	if err := c.readLogs(); err != nil {
		return nil, err
	}
	return c, nil
}

// hashFile is the SHA-256 of the cache's file rel.
func (c *localCache) hashFile(rel string) ([]byte, error) {
	f, err := c.dir.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", c.dir.Name(rel), err)
	}
	return h.Sum(nil), nil
}

// dropNARs leaves out the NARs in bad (each an invalid entry), the paths
// naming them and those paths' referrers.
func (c *localCache) dropNARs(bad map[*object]bool) {
	hashes := map[string]bool{}
	namedBy := map[*object][]string{}
	for _, h := range slices.Sorted(maps.Keys(c.paths)) {
		if p := c.paths[h]; bad[p.nar] {
			hashes[h] = true
			namedBy[p.nar] = append(namedBy[p.nar], cachedir.Printable(c.dir.Name(h+".narinfo")))
			delete(c.paths, h)
		}
	}
	c.nars = slices.DeleteFunc(c.nars, func(o *object) bool { return bad[o] })
	for _, o := range slices.SortedFunc(maps.Keys(bad), func(a, b *object) int { return strings.Compare(a.key, b.key) }) {
		c.invalid = append(c.invalid, &cachedir.EntryError{Name: c.dir.Name(o.file),
			What: "does not hash to the FileHash of " + strings.Join(namedBy[o], ", ")})
	}
	c.dropReferrers(hashes)
}

// dropReferrers leaves out, with an error each, the paths that refer to
// a skipped one, until none does: no narinfo is published without its
// closure. (Their NARs may go up all the same: named by their hash, they
// are harmless.)
func (c *localCache) dropReferrers(bad map[string]bool) {
	for changed := len(bad) > 0; changed; {
		changed = false
		for _, h := range slices.Sorted(maps.Keys(c.paths)) {
			p := c.paths[h]
			if i := slices.IndexFunc(p.refs, func(r string) bool { return bad[r] && r != h }); i >= 0 {
				c.invalid = append(c.invalid, fmt.Errorf("%s: not published: its reference %s is not", c.dir.Name(h+".narinfo"), p.refBase[p.refs[i]]))
				bad[h] = true
				delete(c.paths, h)
				changed = true
			}
		}
	}
}

// readLogs lists the build logs (stat only): log/<drv>, uploaded raw.
func (c *localCache) readLogs() error {
	names, invalid, err := c.dir.Logs()
	if err != nil {
		return err
	}
	c.invalid = append(c.invalid, invalid...)
	for _, n := range names {
		if !cachedir.LogName(path.Base(n)) {
			continue // not a derivation's: verify reports it
		}
		fi, err := c.dir.Lstat(n)
		if err != nil {
			return err
		}
		c.logs = append(c.logs, &object{key: n, file: n, size: fi.Size(), contentType: typeLog})
	}
	return nil
}

func (c *localCache) readPath(e *cachegraph.Entry, nars map[string]*object) (*storePath, error) {
	d, ni := c.dir, e.Info
	hash := strings.TrimSuffix(e.File, ".narinfo")
	p := &storePath{hash: hash, narinfo: smallObject(e.File, typeNarInfo, e.Raw), refBase: map[string]string{}}
	for _, r := range ni.References {
		p.refs = append(p.refs, narinfo.HashPart(r))
		p.refBase[narinfo.HashPart(r)] = r
	}
	u := ni.URL // a NAR's name: cachedir.NarFile
	nar := nars[u]
	if nar == nil {
		fi, err := d.Lstat(u)
		if err != nil {
			return nil, fmt.Errorf("%s: its NAR: %w", d.Name(e.File), err)
		}
		if !fi.Mode().IsRegular() {
			return nil, &cachedir.EntryError{Name: d.Name(u), What: "not a regular file but " + cachedir.DescribeMode(fi.Mode())}
		}
		nar = &object{key: u, file: u, size: fi.Size(), contentType: typeNAR}
		want := ni.FileHash
		if want == nil && ni.Compression == "none" {
			want = ni.NarHash // the file is the NAR
		}
		if want != nil && want.Algo() == nixhash.SHA256 {
			nar.want = want.Digest()
		}
	}
	if ni.FileSize != 0 && uint64(nar.size) != ni.FileSize {
		return nil, &cachedir.EntryError{Name: d.Name(e.File), What: fmt.Sprintf("its NAR %s has %d bytes, FileSize says %d", u, nar.size, ni.FileSize)}
	}
	if nars[u] == nil {
		nars[u] = nar
		c.nars = append(c.nars, nar)
	}
	p.nar = nar
	ls := hash + ".ls"
	data, err := d.ReadFile(ls)
	if err == nil {
		if _, perr := listing.Parse(data); perr != nil {
			err = &cachedir.EntryError{Name: d.Name(ls), What: perr.Error()}
		}
	}
	switch {
	case err == nil:
		p.listing = smallObject(ls, typeJSON, data)
	case errors.Is(err, cachedir.ErrInvalidEntry):
		// The path goes without its listing, which is optional.
		c.invalid = append(c.invalid, err)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return p, nil
}
