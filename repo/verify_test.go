package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// A blob whose content no longer matches its ID when its pack is
// assembled (a RAM or compressor fault after hashing) stops the upload:
// no pack carrying it is stored, and the error names the blob.
func TestVerifyBeforeUpload(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 200<<10)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("verify before upload "), 10000)
	for _, c := range []struct {
		name    string
		data    []byte
		badID   bool
		wantErr bool
	}{
		{"compressed, right ID", text, false, false},
		{"stored raw, right ID", random, false, false},
		{"compressed, wrong ID", text, true, true},
		{"stored raw, wrong ID", random, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			r := testRepository(t)
			ms := r.store.(*memStore)
			id := r.hasher.Sum(c.data)
			if c.badID {
				id[5] ^= 1
			}
			_, err := r.WithUploader(ctx, UploadOptions{}, func(ctx context.Context, up *Uploader) error {
				_, err := up.Add(ctx, DataBlob, id, c.data)
				return err
			})
			if !c.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), id.Short()) {
				t.Fatalf("upload of a blob that does not match its ID: %v, want ErrCorrupt naming %s", err, id.Short())
			}
			for n := range ms.m {
				if strings.HasPrefix(n, "data/") || strings.HasPrefix(n, "index/") {
					t.Errorf("%s stored", n)
				}
			}
		})
	}
}
