package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/cairn-backup/cairn/repo/s3"
)

// Environment variables `make test` sets after starting MinIO
// (scripts/with-minio.sh).
const (
	EnvEndpoint  = "CAIRN_TEST_S3_ENDPOINT"
	EnvAccessKey = "CAIRN_TEST_S3_ACCESS_KEY"
	EnvSecretKey = "CAIRN_TEST_S3_SECRET_KEY"
	// EnvRequire makes a missing MinIO a test failure instead of a skip;
	// `make test` (and so CI) sets it.
	EnvRequire = "CAIRN_TEST_REQUIRE_S3"
)

// MinIOConfig returns the config of a fresh, empty bucket on the test MinIO
// server. Without a server it fails the test when EnvRequire is set and
// skips it otherwise (a plain `go test` on a laptop).
func MinIOConfig(t testing.TB) s3.Config {
	t.Helper()
	ep := os.Getenv(EnvEndpoint)
	if ep == "" {
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("%s is set but %s is not: run the tests with `make test`, which starts MinIO", EnvRequire, EnvEndpoint)
		}
		t.Skipf("no MinIO: %s unset (run `make test` to start one)", EnvEndpoint)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return s3.Config{
		Endpoint:  ep,
		Bucket:    "test-" + hex.EncodeToString(b[:]),
		AccessKey: os.Getenv(EnvAccessKey),
		SecretKey: os.Getenv(EnvSecretKey),
		Insecure:  true,
	}
}

// NewMinIOStore returns a store on a fresh bucket, created.
func NewMinIOStore(t testing.TB) *s3.Store {
	t.Helper()
	st, err := s3.New(MinIOConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}
