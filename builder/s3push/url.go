package s3push

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Target is where a push goes: a bucket (and key prefix) of an S3 service,
// from a URL in the syntax of Nix's own s3:// store.
type Target struct {
	Bucket string
	// Prefix is the key prefix, "" or ending in "/".
	Prefix string
	// Endpoint is HOST[:PORT]; "" for AWS.
	Endpoint string
	Secure   bool
	// Region is "" when the URL does not say: us-east-1 for a custom
	// endpoint (Nix's default), the bucket's own region for AWS.
	Region  string
	Profile string
}

// params are the parameters of Nix's s3:// store URL that say where the
// bucket is and who may write it; the store's other settings (compression,
// secret-key, ...) describe how Nix would write the cache, which is already
// written.
var params = []string{"endpoint", "profile", "region", "scheme"}

// ParseURL parses s3://BUCKET[/PREFIX]?endpoint=...&region=...&scheme=...&profile=...
// as Nix does: endpoint is HOST[:PORT] (its scheme then from scheme=,
// default https) or a full URL such as http://127.0.0.1:9000.
//
// A key prefix is read by Nix 2.33 and later (the curl-based store appends
// the URL's path to each key); older Nix, built on the AWS SDK, takes all
// of BUCKET/PREFIX as the bucket name, so it cannot read a prefixed cache.
func ParseURL(s string) (Target, error) {
	bad := func(format string, a ...any) (Target, error) {
		return Target{}, fmt.Errorf("URL %q: %s", s, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	if u.Scheme != "s3" {
		return bad("not an s3:// URL (s3://BUCKET?endpoint=HOST:PORT&region=REGION)")
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return bad("want s3://BUCKET[/PREFIX]?PARAMS")
	}
	t := Target{Bucket: u.Host}
	if t.Bucket == "" {
		return bad("no bucket name")
	}
	if err := s3utils.CheckValidBucketNameStrict(t.Bucket); err != nil {
		return bad("bucket name %q: %v", t.Bucket, err)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return bad("key prefix %q has an empty, . or .. segment", p)
			}
		}
		t.Prefix = p + "/"
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("%v", err)
	}
	for k, v := range q {
		if !slices.Contains(params, k) {
			return bad("unknown parameter %q (known: %s)", k, strings.Join(params, ", "))
		}
		if len(v) > 1 {
			return bad("parameter %q given %d times", k, len(v))
		}
	}
	t.Region, t.Profile = q.Get("region"), q.Get("profile")
	scheme := q.Get("scheme")
	switch scheme {
	case "", "http", "https":
	default:
		return bad("scheme=%q: want http or https", scheme)
	}
	t.Secure = scheme != "http"
	ep := q.Get("endpoint")
	if strings.Contains(ep, "://") {
		e, err := url.Parse(ep)
		if err != nil {
			return bad("endpoint: %v", err)
		}
		if e.Scheme != "http" && e.Scheme != "https" {
			return bad("endpoint %q: want an http:// or https:// URL or HOST[:PORT]", ep)
		}
		if scheme != "" && scheme != e.Scheme {
			return bad("scheme=%s contradicts endpoint %s", scheme, ep)
		}
		if (e.Path != "" && e.Path != "/") || e.RawQuery != "" || e.User != nil || e.Host == "" {
			return bad("endpoint %q: want SCHEME://HOST[:PORT], without a path", ep)
		}
		t.Endpoint, t.Secure = e.Host, e.Scheme == "https"
	} else if ep != "" {
		if strings.ContainsAny(ep, "/?#@") {
			return bad("endpoint %q: want HOST[:PORT] or a URL", ep)
		}
		t.Endpoint = ep
	}
	if t.Endpoint == "" && !t.Secure {
		return bad("scheme=http needs an endpoint: AWS is https")
	}
	return t, nil
}

// String is the target as an s3:// URL, for messages.
func (t Target) String() string {
	s := "s3://" + t.Bucket + "/" + strings.TrimSuffix(t.Prefix, "/")
	s = strings.TrimSuffix(s, "/")
	if t.Endpoint != "" {
		scheme := "https"
		if !t.Secure {
			scheme = "http"
		}
		s += "?endpoint=" + scheme + "://" + t.Endpoint
	}
	return s
}
