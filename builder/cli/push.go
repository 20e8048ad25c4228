package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/s3push"
)

const pushUsage = `Usage: mkbinarycache push [options] CACHE-DIR URL

Publishes a binary cache directory to an S3-compatible bucket (AWS S3,
Cloudflare R2, MinIO, Garage, versitygw, ...). URL is as for Nix's own
s3:// store:

  s3://BUCKET[/PREFIX]?endpoint=ENDPOINT&region=REGION&scheme=http|https&profile=NAME

ENDPOINT is a URL (http://127.0.0.1:9000, https://ACCOUNT.r2.cloudflarestorage.com)
or HOST[:PORT] (with scheme=, default https); without it, AWS. Custom
endpoints are addressed path-style. A PREFIX is read by Nix 2.33 and later
only (older Nix takes BUCKET/PREFIX for a bucket name).

Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN), else the profile (profile=, else AWS_PROFILE, else
default) of ~/.aws/credentials (or AWS_SHARED_CREDENTIALS_FILE); with
neither, requests are anonymous.

The bucket is a valid cache at every moment: NARs, listings and debuginfo
entries go first, each narinfo only after its NAR and its references'
narinfos, nix-cache-info last. Only what the bucket lacks or holds in
another version (a narinfo signed since) is uploaded, found by one listing
of the bucket; an interrupted push is completed by running it again, which
aborts the multipart uploads it left: those of NARs it has now stored that
gained no part meanwhile, and any older than --abort-uploads-older-than.
An upload that grows is another push's, running now, and is left to finish.

Options:
`

func runPush(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("mkbinarycache push", pushUsage, env)
	var jobs, threads int
	countVar(fs, &jobs, "jobs", s3push.DefaultJobs, "objects uploaded at once (`N`; 0: the default)")
	countVar(fs, &threads, "threads", s3push.DefaultThreads, "parts of one large NAR uploaded at once (`N`; 0: the default)")
	partSize := fs.Int("part-size", s3push.DefaultPartSize>>20, "multipart upload part size in `MiB` (5 or more); larger NARs are uploaded in parts")
	abandon := fs.Duration("abort-uploads-older-than", s3push.DefaultAbandonAge,
		"abort incomplete multipart uploads started this long ago (`DURATION`; 0: all, when no other push can be running)")
	quiet := fs.Bool("quiet", false, "print only errors")
	var up upstreamFlags
	up.register(fs, "references neither in the cache nor in the bucket are asked there")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("push: give a cache directory and an s3:// URL")
	}
	if *abandon < 0 {
		return usagef("push: --abort-uploads-older-than must not be negative")
	}
	if *abandon == 0 {
		*abandon = -1 // every one
	}
	if *partSize < 5 {
		return usagef("push: --part-size must be at least 5 (MiB), S3's smallest part")
	}
	target, err := s3push.ParseURL(pos[1])
	if err != nil {
		return usageError{err}
	}
	o := s3push.Options{Dir: pos[0], Target: target, Jobs: jobs, Threads: threads,
		PartSize: uint64(*partSize) << 20, AbandonAge: *abandon}
	m := newMeter(env.Stderr, "objects", *quiet)
	if len(up.urls) > 0 {
		storeDir, err := cachedir.ResolveStoreDir(o.Dir, "")
		if err != nil {
			return err
		}
		if o.Served, err = up.served(ctx, env, storeDir, m, "push", "taken as not served"); err != nil {
			return err
		}
	}
	stats, err := s3push.Push(ctx, o, func(e s3push.Event) {
		switch e.Kind {
		case s3push.Invalid:
			m.skipped(e.Key, e.Msg)
		case s3push.Warning:
			m.warn(e.Key, e.Msg)
		case s3push.Planned:
			m.plan(e.Objects, uint64(e.Bytes))
			m.info(fmt.Sprintf("uploading %d objects (%s); %d already in the bucket", e.Objects, humanBytes(uint64(e.Bytes)), e.Skipped))
		case s3push.Aborted:
			m.notice("aborted an incomplete upload of %s", e.Key)
		case s3push.Progress:
			m.add(uint64(e.Bytes))
		case s3push.Uploaded:
			m.done(fmt.Sprintf("uploaded %s (%s)", e.Key, humanBytes(uint64(e.Bytes))))
		}
	})
	if err != nil && !errors.Is(err, s3push.ErrInvalid) {
		m.finish("")
		return err
	}
	summary := fmt.Sprintf("%d objects uploaded (%s), %d already in the bucket (%s), in %.2fs, %s",
		stats.Uploaded, humanBytes(uint64(stats.UploadedBytes)), stats.Skipped, humanBytes(uint64(stats.SkippedBytes)),
		stats.Elapsed.Seconds(), rate(uint64(stats.UploadedBytes), stats.Elapsed))
	if stats.Aborted > 0 {
		summary += fmt.Sprintf("; %d incomplete uploads aborted", stats.Aborted)
	}
	m.finish(summary)
	return err // invalid entries were left out: exit 1
}
