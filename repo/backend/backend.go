// Package backend turns a repository location into a repo.Store: a plain
// path is a local directory, s3://HOST[:PORT]/BUCKET[/PREFIX] is a bucket.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/dir"
	"github.com/cairn-backup/cairn/repo/s3"
)

// Options carry what a location string does not: S3 credentials and the
// plain-http switch.
type Options struct {
	AccessKey string
	SecretKey string
	Region    string
	HTTP      bool // S3 over plain http (MinIO on a private network)
}

// DefaultLocation is the repository used when none is given:
// $XDG_DATA_HOME/cairn/repo, else ~/.local/share/cairn/repo.
func DefaultLocation() (string, error) {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "cairn", "repo"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home folder for the default repository; use --repo: %w", err)
	}
	return filepath.Join(home, ".local", "share", "cairn", "repo"), nil
}

// ParseS3 parses s3://HOST[:PORT]/BUCKET[/PREFIX].
func ParseS3(loc string, o Options) (s3.Config, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return s3.Config{}, fmt.Errorf("repository %q: want s3://HOST[:PORT]/BUCKET[/PREFIX]", loc)
	}
	p := strings.Trim(u.Path, "/")
	bucket, prefix, _ := strings.Cut(p, "/")
	if bucket == "" {
		return s3.Config{}, fmt.Errorf("repository %q: no bucket: want s3://HOST[:PORT]/BUCKET[/PREFIX]", loc)
	}
	return s3.Config{
		Endpoint: u.Host, Bucket: bucket, Prefix: prefix,
		AccessKey: o.AccessKey, SecretKey: o.SecretKey, Region: o.Region, Insecure: o.HTTP,
	}, nil
}

// Open returns the store at loc. With create, a missing bucket or folder is
// made (for init); without, a missing bucket is ErrNoBucket and a missing
// folder ErrNoRepository.
func Open(ctx context.Context, loc string, o Options, create bool) (repo.Store, error) {
	if strings.HasPrefix(loc, "s3://") {
		cfg, err := ParseS3(loc, o)
		if err != nil {
			return nil, err
		}
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --s3-access-key/--s3-secret-key)")
		}
		st, err := s3.New(cfg)
		if err != nil {
			return nil, err
		}
		if create {
			return st, st.EnsureBucket(ctx)
		}
		ok, err := st.BucketExists(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: %w", st.Location(), repo.ErrNoBucket)
		}
		return st, nil
	}
	if strings.Contains(loc, "://") {
		return nil, fmt.Errorf("repository %q: unknown scheme; use a path or s3://", loc)
	}
	st, err := dir.New(loc)
	if err != nil {
		return nil, err
	}
	if !create {
		if _, err := os.Stat(st.Location()); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", st.Location(), repo.ErrNoRepository)
		}
	}
	return st, nil
}
