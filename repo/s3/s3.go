// Package s3 is a repo.Store on an S3-compatible bucket (AWS S3, MinIO,
// Ceph RGW, ...) through github.com/minio/minio-go/v7.
//
// It is a thin translation: retries with exponential backoff on 5xx answers
// and network errors are minio-go's own (MaxRetries), every PUT is a single
// request carrying Content-MD5 so the server refuses a truncated or altered
// body, and S3 error codes are mapped onto repo's sentinel errors.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-backup/cairn/repo"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	Endpoint  string // host[:port]
	Bucket    string
	Prefix    string // optional folder inside the bucket, without slashes at the ends
	AccessKey string
	SecretKey string
	Region    string
	Insecure  bool // plain http
	// MaxRetries bounds minio-go's retries per request; 0 means the default.
	MaxRetries int
}

// Store is a bucket (and optional prefix) seen as a repo.Store.
type Store struct {
	client *minio.Client
	cfg    Config
}

var _ repo.Store = (*Store)(nil)

// defaultRetries: with minio-go's exponential backoff (starting at 1 s,
// capped at 30 s) six attempts ride out a store restart of about a minute
// without hanging a backup for long on a dead endpoint.
const defaultRetries = 6

// New connects to the endpoint. It does not check that the bucket exists;
// see EnsureBucket and BucketExists.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3: endpoint and bucket are required")
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Packs are already compressed and encrypted.
		DisableCompression: true,
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = defaultRetries
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       !cfg.Insecure,
		Region:       cfg.Region,
		Transport:    transport,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", cfg.Endpoint, err)
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	return &Store{client: client, cfg: cfg}, nil
}

// Location implements repo.Locator.
func (s *Store) Location() string {
	loc := "s3://" + s.cfg.Endpoint + "/" + s.cfg.Bucket
	if s.cfg.Prefix != "" {
		loc += "/" + s.cfg.Prefix
	}
	return loc
}

func (s *Store) key(name string) string {
	if s.cfg.Prefix == "" {
		return name
	}
	return s.cfg.Prefix + "/" + name
}

func (s *Store) translate(op, name string, err error) error {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case minio.NoSuchKey, "NotFound":
			return fmt.Errorf("%s %s: %w", op, name, repo.ErrNotFound)
		case minio.NoSuchBucket:
			return fmt.Errorf("%s %s: bucket %s: %w", op, name, s.cfg.Bucket, repo.ErrNoBucket)
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s %s: %w", op, name, repo.ErrNotFound)
		}
	}
	return fmt.Errorf("%s %s at %s: %w", op, name, s.Location(), err)
}

// BucketExists reports whether the bucket is there.
func (s *Store) BucketExists(ctx context.Context) (bool, error) {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return false, fmt.Errorf("s3 %s: %w", s.Location(), err)
	}
	return ok, nil
}

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.BucketExists(ctx)
	if err != nil || ok {
		return err
	}
	err = s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && (resp.Code == "BucketAlreadyOwnedByYou" || resp.Code == "BucketAlreadyExists") {
			return nil
		}
		return fmt.Errorf("create bucket %s at %s: %w", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	return nil
}

// Put implements repo.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.putReader(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// putReader uploads size bytes from r, which must also be an io.ReaderAt
// and io.Seeker: minio-go then reads it twice in place instead of
// buffering a copy, and rewinds it to retry.
func (s *Store) putReader(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), r, size,
		minio.PutObjectOptions{
			ContentType:      "application/octet-stream",
			SendContentMd5:   true,
			DisableMultipart: true,
		})
	if err != nil {
		return s.translate("put", name, err)
	}
	return nil
}

// PutPieces implements repo.PiecesPutter: the body is read from the
// pieces in place (twice: for its MD5, then to send it).
func (s *Store) PutPieces(ctx context.Context, name string, p repo.Pieces) error {
	r := p.Reader()
	return s.putReader(ctx, name, r, r.Size())
}

var _ repo.PiecesPutter = (*Store)(nil)

// Get implements repo.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if length == 0 {
		return []byte{}, nil
	}
	opts := minio.GetObjectOptions{}
	if off != 0 || length > 0 {
		end := int64(0)
		if length > 0 {
			end = off + length - 1
		}
		if err := opts.SetRange(off, end); err != nil {
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.key(name), opts)
	if err != nil {
		return nil, s.translate("get", name, err)
	}
	defer obj.Close()
	var buf []byte
	if length > 0 {
		buf = make([]byte, length)
		n, err := io.ReadFull(obj, buf)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("get %s: range %d+%d beyond end of object (read %d)", name, off, length, n)
			}
			return nil, s.translate("get", name, err)
		}
		return buf, nil
	}
	buf, err = io.ReadAll(obj)
	if err != nil {
		return nil, s.translate("get", name, err)
	}
	return buf, nil
}

// GetReader implements repo.RangeReader: the range streams from the
// server as it is read.
func (s *Store) GetReader(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+length-1); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.key(name), opts)
	if err != nil {
		return nil, s.translate("get", name, err)
	}
	return &objectReader{obj: obj, s: s, name: name}, nil
}

var _ repo.RangeReader = (*Store)(nil)

// objectReader translates the errors of a lazily requested object (a
// missing key shows up at the first read).
type objectReader struct {
	obj  *minio.Object
	s    *Store
	name string
}

func (r *objectReader) Read(b []byte) (int, error) {
	n, err := r.obj.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = r.s.translate("get", r.name, err)
	}
	return n, err
}

func (r *objectReader) Close() error { return r.obj.Close() }

// Stat implements repo.Store.
func (s *Store) Stat(ctx context.Context, name string) (repo.ObjectInfo, error) {
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return repo.ObjectInfo{}, s.translate("stat", name, err)
	}
	return repo.ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// List implements repo.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(repo.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	strip := ""
	if s.cfg.Prefix != "" {
		strip = s.cfg.Prefix + "/"
	}
	for oi := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.key(prefix), Recursive: true}) {
		if oi.Err != nil {
			return s.translate("list", prefix, oi.Err)
		}
		name := strings.TrimPrefix(oi.Key, strip)
		if err := fn(repo.ObjectInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete implements repo.Store. S3 deletes of missing keys succeed, so a
// Stat first gives the ErrNotFound the contract promises.
func (s *Store) Delete(ctx context.Context, name string) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		return s.translate("delete", name, err)
	}
	return nil
}
