package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/s3"
)

// Target is where the repositories of a run live: local folders, or an
// S3 endpoint such as MinIO.
type Target struct {
	Name string
	S3   *S3Endpoint // nil: a local folder per repository
}

// LocalTarget keeps repositories in local folders.
var LocalTarget = Target{Name: "local"}

// S3Endpoint is an S3 server and the bucket the runs use; every tool's
// repository gets its own prefix in it, deleted afterwards.
type S3Endpoint struct {
	Endpoint  string // host:port, plain http
	AccessKey string
	SecretKey string
	Bucket    string
}

// Location is one repository: a folder, or a prefix of a bucket reached
// through the run's counting proxy.
type Location struct {
	Dir string // when S3 is nil
	S3  *S3Location
}

// S3Location is a repository in a bucket.
type S3Location struct {
	Endpoint  string // host:port of the proxy, plain http
	Bucket    string
	Prefix    string
	AccessKey string
	SecretKey string
}

// storeProxy forwards to an S3 endpoint and counts what passes: requests,
// bytes sent to the store (request bodies) and bytes received from it.
// Tools talk to it instead of the server, so every tool is measured the
// same way without its cooperation.
type storeProxy struct {
	addr     string
	srv      *http.Server
	requests atomic.Int64
	sent     atomic.Int64
	received atomic.Int64
}

func startStoreProxy(endpoint string) (*storeProxy, error) {
	target, err := url.Parse("http://" + endpoint)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &storeProxy{addr: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	// The Host header stays the proxy's: clients signed their requests
	// for it, and the server checks the signature against it.
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &countingReader{r: resp.Body, n: &p.received}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if r.Body != nil {
			r.Body = &countingReader{r: r.Body, n: &p.sent}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *storeProxy) reset() {
	p.requests.Store(0)
	p.sent.Store(0)
	p.received.Store(0)
}

func (p *storeProxy) close() { p.srv.Close() }

type countingReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// s3Store opens the bucket behind loc directly (not through the proxy, so
// the bench's own listing is not counted).
func s3Store(ep *S3Endpoint, prefix string) (*s3.Store, error) {
	return s3.New(s3.Config{Endpoint: ep.Endpoint, Bucket: ep.Bucket, Prefix: prefix,
		AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, Insecure: true})
}

// prefixSize sums the sizes of the objects under prefix.
func prefixSize(ctx context.Context, ep *S3Endpoint, prefix string) (int64, error) {
	st, err := s3Store(ep, prefix)
	if err != nil {
		return 0, err
	}
	var n int64
	err = st.List(ctx, "", func(oi repo.ObjectInfo) error { n += oi.Size; return nil })
	return n, err
}

// deletePrefix removes a finished run's repository from the bucket.
func deletePrefix(ctx context.Context, ep *S3Endpoint, prefix string) error {
	st, err := s3Store(ep, prefix)
	if err != nil {
		return err
	}
	var names []string
	if err := st.List(ctx, "", func(oi repo.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		return err
	}
	for _, n := range names {
		if err := st.Delete(ctx, n); err != nil {
			return fmt.Errorf("delete %s/%s: %w", prefix, n, err)
		}
	}
	return nil
}

func ensureBucket(ctx context.Context, ep *S3Endpoint) error {
	st, err := s3Store(ep, "")
	if err != nil {
		return err
	}
	return st.EnsureBucket(ctx)
}
