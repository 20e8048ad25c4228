package s3push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// awsEndpoint is the endpoint of a URL without endpoint=.
const awsEndpoint = "s3.amazonaws.com"

// newClient makes the S3 client of a push. Credentials come from the
// chain Nix uses (its first two links): AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the profile (profile=,
// else AWS_PROFILE, else "default") of ~/.aws/credentials (or
// AWS_SHARED_CREDENTIALS_FILE); with neither, requests are anonymous,
// which a bucket may allow. Custom endpoints are addressed path-style, as
// Nix does.
func newClient(o Options) (*minio.Client, error) {
	t := o.Target
	endpoint, region, lookup := t.Endpoint, t.Region, minio.BucketLookupPath
	if endpoint == "" {
		endpoint, lookup = awsEndpoint, minio.BucketLookupAuto
	} else if region == "" {
		// Nix's default; it also spares a GetBucketLocation request.
		region = "us-east-1"
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Profile: t.Profile},
	})
	if t.Profile != "" {
		if v, err := creds.GetWithContext(nil); err != nil || v.SignerType.IsAnonymous() {
			return nil, fmt.Errorf("%s: no credentials for profile %q: neither AWS_ACCESS_KEY_ID nor ~/.aws/credentials (or AWS_SHARED_CREDENTIALS_FILE) has them", t, t.Profile)
		}
	}
	tr, err := minio.DefaultTransport(t.Secure)
	if err != nil {
		return nil, err
	}
	tr.DialContext = (&net.Dialer{Timeout: min(o.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = max(16, o.Jobs*o.Threads)
	retries := o.MaxRetries
	if retries <= 0 {
		retries = DefaultMaxRetries
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds: creds, Secure: t.Secure, Transport: tr, Region: region,
		BucketLookup: lookup, MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return c, nil
}

// accessCode reports whether an error code says the credentials are bad
// (versitygw answers an unknown key with its own code, and status 404).
func accessCode(code string) bool {
	switch code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "XAdminUserNotFound":
		return true
	}
	return false
}

// describe turns a client error into one that names the bucket and says
// what to check.
func describe(err error, t Target, op string) error {
	where := t.String()
	if op != "" {
		where += ": " + op
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "":
	case resp.Code == "NoSuchBucket":
		// minio-go says so of any bare 404, also from a server that is
		// no S3 endpoint at all: name the server.
		return fmt.Errorf("%s: the bucket %q does not exist (create it first; HTTP %d from server %q)", where, t.Bucket, resp.StatusCode, resp.Server)
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized || accessCode(resp.Code):
		return fmt.Errorf("%s: access denied (%s: %s): check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE or profile= in ~/.aws/credentials", where, resp.Code, resp.Message)
	default:
		return fmt.Errorf("%s: %s: %s", where, resp.Code, resp.Message)
	}
	endpoint := t.Endpoint
	if endpoint == "" {
		endpoint = awsEndpoint
	}
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no answer from %s in time: %w", where, endpoint, err)
	case errors.As(err, &nerr):
		return fmt.Errorf("%s: cannot reach %s: %w", where, endpoint, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
