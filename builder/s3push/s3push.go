// Package s3push publishes a flat-file binary cache directory to an
// S3-compatible bucket, so that the bucket is a cache Nix can substitute
// from at every moment of the upload: NARs, listings and debuginfo entries
// first, then narinfos layer by layer (a path's narinfo only once its NAR
// and its references' narinfos are stored), nix-cache-info last. A push
// that dies leaves at most unreferenced NARs and incomplete multipart
// uploads: the next push completes the bucket and aborts those uploads,
// but none of another push that runs at the same time.
//
// A push lists the bucket once and uploads only what is missing or
// changed: NARs by key and size (their key is their hash), other files by
// size and MD5 (a narinfo changes when it is signed).
package s3push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/order"
	"github.com/mkbinarycache/mkbinarycache/builder/internal/pool"
)

// Defaults of Options.
const (
	DefaultJobs       = 8
	DefaultThreads    = 4
	DefaultPartSize   = 16 << 20
	DefaultMaxRetries = 4
	DefaultTimeout    = 30 * time.Second
	// An incomplete multipart upload started this long ago is taken as
	// left by a push that died: one NAR's upload takes minutes, not hours,
	// and a younger one may be another push's, uploading right now.
	DefaultAbandonAge = time.Hour
)

// Options say what to push where and how.
type Options struct {
	Dir    string // the cache directory
	Target Target
	// Jobs is how many objects upload at once (0: DefaultJobs).
	Jobs int
	// Threads is how many parts of one large NAR upload at once
	// (0: DefaultThreads).
	Threads int
	// PartSize is the size of multipart upload parts; larger objects are
	// uploaded in parts (0: DefaultPartSize).
	PartSize uint64
	// MaxRetries is how many times a request is tried (0:
	// DefaultMaxRetries; 1: once).
	MaxRetries int
	// Timeout bounds connecting, and the first request, to the
	// endpoint (0: DefaultTimeout).
	Timeout time.Duration
	// LockWait bounds the wait for a cache that gc holds; 0 waits as long
	// as it takes.
	LockWait time.Duration
	// AbandonAge is the age from which any incomplete multipart upload
	// under the target is aborted (0: DefaultAbandonAge; < 0: every one,
	// for when no other push can be running). Younger uploads of the
	// cache's own NARs are aborted at the end if they gained no part
	// meanwhile.
	AbandonAge time.Duration
	// Served, if not nil, says which of some store paths an upstream
	// cache serves: a reference neither in the cache nor in the bucket is
	// fine if it does (the cache is closed relative to the upstream).
	Served func(ctx context.Context, paths []string) (map[string]bool, error)
}

// EventKind says what an Event reports.
type EventKind int

// The events of a push.
const (
	// Planned: Objects objects of Bytes bytes will be uploaded; Skipped
	// are in the bucket already. Once, after the bucket was listed.
	Planned EventKind = iota
	// Aborted: an incomplete multipart upload of Key, left by an
	// interrupted push, was removed: one older than Options.AbandonAge, or
	// one of a NAR this push stored that gained no part while it ran.
	Aborted
	// Progress: Bytes more bytes of Key were sent.
	Progress
	// Uploaded: Key, of Bytes bytes, is stored.
	Uploaded
	// Invalid: Key is an entry of the cache (its path) that a cache may
	// not hold, Msg what is wrong with it; it is not published.
	Invalid
	// Warning: Msg is something wrong that the push went on past.
	Warning
)

// Event is one step of a push. Events are delivered one at a time.
type Event struct {
	Kind    EventKind
	Key     string
	Bytes   int64
	Objects int
	Skipped int
	Msg     string
}

// Stats sum up a push.
type Stats struct {
	Uploaded, Skipped, Aborted  int
	UploadedBytes, SkippedBytes int64
	Elapsed                     time.Duration
}

// Push publishes the cache at o.Dir to o.Target, reporting to events
// (which may be nil).
func Push(ctx context.Context, o Options, events func(Event)) (Stats, error) {
	start := time.Now()
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs
	}
	if o.Threads <= 0 {
		o.Threads = DefaultThreads
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AbandonAge == 0 {
		o.AbandonAge = DefaultAbandonAge
	}
	d, err := cachedir.Open(o.Dir)
	if err != nil {
		return Stats{}, err
	}
	defer d.Close()
	lock, err := d.Lock(ctx, cachedir.Shared, o.LockWait)
	if err != nil {
		return Stats{}, err
	}
	defer lock.Release()
	if !lock.Supported() && events != nil {
		events(Event{Kind: Warning, Key: o.Dir, Msg: cachedir.UnlockedWarning("what this push reads")})
	}
	local, err := readCache(ctx, d)
	if err != nil {
		return Stats{}, err
	}
	client, err := newClient(o)
	if err != nil {
		return Stats{}, err
	}
	p := &push{o: o, client: client, core: minio.Core{Client: client}, local: local, events: events}
	if err := p.list(ctx); err != nil {
		return Stats{}, err
	}
	if err := p.checkNARs(ctx); err != nil {
		return Stats{}, err
	}
	for _, err := range local.invalid {
		var ee *cachedir.EntryError
		if errors.As(err, &ee) {
			p.emit(Event{Kind: Invalid, Key: cachedir.Printable(ee.Name), Msg: ee.What})
		} else {
			p.emit(Event{Kind: Invalid, Msg: err.Error()})
		}
	}
	pl, err := p.plan(ctx)
	if err != nil {
		return Stats{}, err
	}
	p.emit(Event{Kind: Planned, Objects: pl.objects, Bytes: pl.bytes, Skipped: p.stats.Skipped})
	if err := p.abortIncomplete(ctx, start.Add(-o.AbandonAge)); err != nil {
		return p.stats, err
	}
	for _, phase := range pl.phases {
		if err := p.uploadAll(ctx, phase); err != nil {
			return p.stats, err
		}
	}
	if err := p.abortRedundant(ctx); err != nil {
		return p.stats, err
	}
	p.stats.Elapsed = time.Since(start)
	if n := len(local.invalid); n > 0 {
		return p.stats, fmt.Errorf("%s: %d %w", o.Dir, n, ErrInvalid)
	}
	return p.stats, nil
}

// ErrInvalid is returned (wrapped) when invalid entries of the cache were
// left out of the push.
var ErrInvalid = errors.New("invalid entries of the cache were not published")

type remote struct {
	size int64
	etag string
}

type push struct {
	o      Options
	client *minio.Client
	core   minio.Core // client's multipart calls
	local  *localCache
	bucket map[string]remote // by key, without the prefix
	// idle notes the young incomplete uploads of this cache's NARs found
	// at the start, by upload ID: their parts then (partsState).
	idle map[string]string

	mu     sync.Mutex // guards stats and events
	stats  Stats
	events func(Event)
}

func (p *push) emit(e Event) {
	if p.events == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events(e)
}

func (p *push) key(k string) string { return p.o.Target.Prefix + k }

// list reads the whole bucket (under the prefix) in one listing: far
// fewer requests than one HEAD per object.
func (p *push) list(ctx context.Context) error {
	t := p.o.Target
	// First one key, within the timeout: an unreachable endpoint, wrong
	// keys or a missing bucket fail here, quickly and clearly (a GET's
	// error has a body saying which; a HEAD bucket's has not).
	probe, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	first, ok := <-p.client.ListObjects(probe, t.Bucket, minio.ListObjectsOptions{Prefix: t.Prefix, Recursive: true, MaxKeys: 1})
	cancel()
	if ok && first.Err != nil {
		return describe(first.Err, t, "")
	}
	p.bucket = map[string]remote{}
	for obj := range p.client.ListObjects(ctx, t.Bucket, minio.ListObjectsOptions{Prefix: t.Prefix, Recursive: true}) {
		if obj.Err != nil {
			return describe(obj.Err, t, "list the bucket")
		}
		p.bucket[strings.TrimPrefix(obj.Key, t.Prefix)] = remote{size: obj.Size, etag: strings.Trim(obj.ETag, `"`)}
	}
	return nil
}

// stored reports whether the bucket holds o as it is here.
func (p *push) stored(o *object) bool {
	r, ok := p.bucket[o.key]
	return ok && r.size == o.size && (o.md5 == "" || strings.EqualFold(r.etag, o.md5))
}

type plan struct {
	phases  [][]*object // each uploaded only after the one before is stored
	objects int
	bytes   int64
}

// plan orders what is missing from the bucket, after checking that the
// result is a cache: the bucket's nix-cache-info is for the same store,
// and every reference is in the cache or in the bucket.
func (p *push) plan(ctx context.Context) (*plan, error) {
	t, local := p.o.Target, p.local
	if _, ok := p.bucket[cachedir.InfoFile]; ok && !p.stored(local.infoO) {
		// A different nix-cache-info: fine if only Priority or
		// WantMassQuery differ (re-uploaded last), not the store.
		data, err := p.get(cachedir.InfoFile)
		if err != nil {
			return nil, err
		}
		if got := cachedir.ParseInfo(data); got.StoreDir != local.info.StoreDir {
			return nil, fmt.Errorf("%s: the bucket is a cache for store %s, %s is for %s", t, got.StoreDir, p.o.Dir, local.info.StoreDir)
		}
	}
	hashes := make([]string, 0, len(local.paths))
	elsewhere := map[string]string{} // store path -> a referrer's narinfo
	for h, sp := range local.paths {
		hashes = append(hashes, h)
		for _, r := range sp.refs {
			if _, ok := local.paths[r]; !ok && r != h {
				if _, ok := p.bucket[r+".narinfo"]; !ok {
					elsewhere[p.storeDir()+"/"+sp.refBase[r]] = h + ".narinfo"
				}
			}
		}
	}
	if err := p.servedUpstream(ctx, elsewhere); err != nil {
		return nil, err
	}
	layers, err := order.Layers(hashes, func(h string) []string { return local.paths[h].refs })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.o.Dir, err)
	}
	pl := &plan{}
	add := func(objs []*object) {
		var todo []*object
		for _, o := range objs {
			if p.stored(o) {
				p.stats.Skipped++
				p.stats.SkippedBytes += o.size
				continue
			}
			todo = append(todo, o)
			pl.objects++
			pl.bytes += o.size
		}
		if len(todo) > 0 {
			pl.phases = append(pl.phases, todo)
		}
	}
	// NARs and listings at once, large NARs first so that the last
	// minutes do not run one upload alone.
	first := append([]*object(nil), local.nars...)
	sortBySizeDesc(first)
	for _, h := range hashes {
		if ls := local.paths[h].listing; ls != nil {
			first = append(first, ls)
		}
	}
	first = append(first, local.logs...)
	add(first)
	add(local.debug) // they name NARs
	for _, layer := range layers {
		objs := make([]*object, len(layer))
		for i, h := range layer {
			objs[i] = local.paths[h].narinfo
		}
		add(objs)
	}
	add([]*object{local.infoO})
	return pl, nil
}

// checkNARs hashes each NAR the bucket lacks against its narinfo's
// FileHash before anything is uploaded: a NAR that is not what its
// narinfo says is not published, nor the narinfos naming it, nor their
// referrers.
func (p *push) checkNARs(ctx context.Context) error {
	var todo []*object
	for _, o := range p.local.nars {
		if o.want != nil && !p.stored(o) {
			todo = append(todo, o)
		}
	}
	var mu sync.Mutex
	var errs []error
	bad := map[*object]bool{}
	pool.Each(ctx, p.o.Jobs, todo, func(o *object) {
		sum, err := p.local.hashFile(o.file)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs = append(errs, err)
		case !bytes.Equal(sum, o.want):
			bad[o] = true
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(bad) > 0 {
		p.local.dropNARs(bad)
	}
	return nil
}

// get downloads a small object.
// servedUpstream checks that upstream serves the references (store path
// -> a referrer) that are neither in the cache nor in the bucket.
func (p *push) servedUpstream(ctx context.Context, refs map[string]string) error {
	if len(refs) == 0 {
		return nil
	}
	paths := make([]string, 0, len(refs))
	for r := range refs {
		paths = append(paths, r)
	}
	sort.Strings(paths)
	served := map[string]bool{}
	if p.o.Served != nil {
		var err error
		if served, err = p.o.Served(ctx, paths); err != nil {
			return err
		}
	}
	for _, r := range paths {
		if !served[r] {
			where := "nor in " + p.o.Target.String()
			if p.o.Served != nil {
				where = "nor in " + p.o.Target.String() + " nor served upstream"
			}
			return fmt.Errorf("%s: its reference %s is neither in %s %s", refs[r], path.Base(r), p.o.Dir, where)
		}
	}
	return nil
}

func (p *push) storeDir() string {
	if d := p.local.info.StoreDir; d != "" {
		return d
	}
	return cachedir.DefaultStoreDir
}

func (p *push) get(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.o.Timeout)
	defer cancel()
	obj, err := p.client.GetObject(ctx, p.o.Target.Bucket, p.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, describe(err, p.o.Target, "get "+key)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		return nil, describe(err, p.o.Target, "get "+key)
	}
	return data, nil
}

// abortIncomplete removes the multipart uploads that killed pushes left,
// those started before cutoff: their parts are stored, and billed, until
// aborted. Younger ones may be another push's, running now: those of this
// cache's NARs are noted, for abortRedundant to tell at the end.
func (p *push) abortIncomplete(ctx context.Context, cutoff time.Time) error {
	nars := make(map[string]bool, len(p.local.nars))
	for _, o := range p.local.nars {
		nars[o.key] = true
	}
	p.idle = map[string]string{}
	return p.abortUploads(ctx, func(u minio.ObjectMultipartInfo) bool {
		if p.o.AbandonAge < 0 || u.Initiated.Before(cutoff) {
			return true
		}
		if nars[strings.TrimPrefix(u.Key, p.o.Target.Prefix)] {
			if state, err := p.partsState(ctx, u); err == nil {
				p.idle[u.UploadID] = state
			}
		}
		return false
	})
}

// abortUploads aborts the incomplete multipart uploads under the target
// that abort selects.
func (p *push) abortUploads(ctx context.Context, abort func(minio.ObjectMultipartInfo) bool) error {
	t := p.o.Target
	for u := range p.client.ListIncompleteUploads(ctx, t.Bucket, t.Prefix, true) {
		if u.Err != nil {
			return describe(u.Err, t, "list incomplete uploads")
		}
		if !abort(u) {
			continue
		}
		if err := p.core.AbortMultipartUpload(ctx, t.Bucket, u.Key, u.UploadID); err != nil {
			return describe(err, t, "abort the incomplete upload of "+u.Key)
		}
		p.mu.Lock()
		p.stats.Aborted++
		p.mu.Unlock()
		p.emit(Event{Kind: Aborted, Key: strings.TrimPrefix(u.Key, t.Prefix)})
	}
	return nil
}

// abortRedundant removes the incomplete uploads of this cache's NARs, all
// now stored, that were there when the push began and have had no part
// uploaded since: left by a killed push, whatever their age. A NAR's key
// is its hash, so they could only store what is there. One that gained
// parts meanwhile is another push's, running now, and is left alone:
// aborting a live upload is not safe on every S3 server (versitygw, racing
// a part in flight, let such an upload complete without its metadata).
func (p *push) abortRedundant(ctx context.Context) error {
	if len(p.idle) == 0 {
		return nil
	}
	return p.abortUploads(ctx, func(u minio.ObjectMultipartInfo) bool {
		before, ok := p.idle[u.UploadID]
		if !ok {
			return false
		}
		now, err := p.partsState(ctx, u)
		return err == nil && now == before
	})
}

// partsState sums up the parts an upload has, to tell whether it grows.
func (p *push) partsState(ctx context.Context, u minio.ObjectMultipartInfo) (string, error) {
	r, err := p.core.ListObjectParts(ctx, p.o.Target.Bucket, u.Key, u.UploadID, 0, 1000)
	if err != nil {
		return "", err
	}
	var size int64
	var last time.Time
	for _, part := range r.ObjectParts {
		size += part.Size
		if part.LastModified.After(last) {
			last = part.LastModified
		}
	}
	return fmt.Sprintf("%d parts, %d bytes, last %s, more %t", len(r.ObjectParts), size, last.Format(time.RFC3339Nano), r.IsTruncated), nil
}

// uploadAll uploads objs, Jobs at a time; the first error stops the rest.
func (p *push) uploadAll(ctx context.Context, objs []*object) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var first error
	pool.Each(ctx, p.o.Jobs, objs, func(o *object) {
		if ctx.Err() != nil {
			return
		}
		if err := p.upload(ctx, o); err != nil {
			once.Do(func() { first = err; cancel() })
		}
	})
	if first == nil {
		// The caller's context ended the phase early.
		first = ctx.Err()
	}
	return first
}

// upload stores one object. Small objects go in one request with
// Content-MD5 (so the server checks them), large ones as multipart
// uploads of Threads parts at once. Neither uses streaming (aws-chunked)
// signatures, after which some servers keep "Content-Encoding: aws-chunked"
// on the object, and Nix's HTTP client fails to read it.
func (p *push) upload(ctx context.Context, o *object) error {
	var r io.Reader
	if o.file != "" {
		f, err := p.local.dir.Open(o.file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	} else {
		r = bytes.NewReader(o.data)
	}
	prog := &progress{p: p, key: o.key}
	opts := minio.PutObjectOptions{ContentType: o.contentType, DisableContentSha256: true, Progress: prog}
	if uint64(o.size) > p.o.PartSize {
		opts.NumThreads = uint(p.o.Threads)
		opts.PartSize = partSize(o.size, p.o.PartSize)
	} else {
		opts.SendContentMd5 = true
		opts.DisableMultipart = true
	}
	info, err := p.client.PutObject(ctx, p.o.Target.Bucket, p.key(o.key), r, o.size, opts)
	if err != nil && o.md5 == "" && ctx.Err() == nil {
		// A NAR (no md5: its key is its hash) that another push stored,
		// having aborted this upload of it (older versions did; so may a
		// push that found it idle for long), is stored all the same.
		if st, serr := p.client.StatObject(ctx, p.o.Target.Bucket, p.key(o.key), minio.StatObjectOptions{}); serr == nil && st.Size == o.size {
			p.mu.Lock()
			p.stats.Skipped++
			p.stats.SkippedBytes += o.size
			p.mu.Unlock()
			return nil
		}
	}
	if err != nil {
		return describe(err, p.o.Target, "upload "+o.key)
	}
	if info.Size != o.size {
		return fmt.Errorf("%s: upload %s: stored %d bytes of %d", p.o.Target, o.key, info.Size, o.size)
	}
	prog.flush()
	p.mu.Lock()
	p.stats.Uploaded++
	p.stats.UploadedBytes += o.size
	p.mu.Unlock()
	p.emit(Event{Kind: Uploaded, Key: o.key, Bytes: o.size})
	return nil
}

// maxParts is S3's limit on the parts of one upload, less a margin.
const maxParts = 9000

// partSize is the part size for an object of size bytes: want, or larger
// (whole MiB) where want would need too many parts.
func partSize(size int64, want uint64) uint64 {
	const mib = 1 << 20
	if need := (uint64(size) + maxParts - 1) / maxParts; need > want {
		return (need + mib - 1) / mib * mib
	}
	return want
}

func sortBySizeDesc(objs []*object) {
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].size > objs[j].size })
}

// progressStep is how many bytes a Progress event reports at least.
const progressStep = 1 << 20

// progress is minio-go's progress reader for one upload: it is handed the
// bytes as they are sent, possibly by several goroutines at once.
type progress struct {
	p       *push
	key     string
	mu      sync.Mutex
	pending int64
}

func (g *progress) Read(b []byte) (int, error) {
	g.mu.Lock()
	g.pending += int64(len(b))
	n := g.pending
	if n >= progressStep {
		g.pending = 0
	}
	g.mu.Unlock()
	if n >= progressStep {
		g.p.emit(Event{Kind: Progress, Key: g.key, Bytes: n})
	}
	return len(b), nil
}

func (g *progress) flush() {
	g.mu.Lock()
	n := g.pending
	g.pending = 0
	g.mu.Unlock()
	if n > 0 {
		g.p.emit(Event{Kind: Progress, Key: g.key, Bytes: n})
	}
}
