package repo

import (
	"bytes"
	"context"
	"testing"
)

func benchData(compressible bool) []byte {
	if compressible {
		return bytes.Repeat([]byte("a fairly ordinary line of source code;\n"), (1<<20)/39+1)[:1<<20]
	}
	b := make([]byte, 1<<20)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func BenchmarkSealBlob(b *testing.B) {
	r := testRepository(b)
	for _, c := range []struct {
		name string
		comp bool
	}{{"random", false}, {"text", true}} {
		b.Run(c.name, func(b *testing.B) {
			data := benchData(c.comp)
			id := r.hasher.Sum(data)
			buf := make([]byte, 0, len(data)+64)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				buf = r.sealBlob(buf[:0], DataBlob, id, data)
			}
		})
	}
}

// BenchmarkPackWrite measures the whole write path of 16 MiB of chunks:
// compress, encrypt, shuffle, verify (decrypt, decompress, re-hash) and
// store into memory.
func BenchmarkPackWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		comp bool
	}{{"random", false}, {"text", true}} {
		b.Run(c.name, func(b *testing.B) {
			r := testRepository(b)
			r.cfg.PackSize = 16 << 20
			base := benchData(c.comp)
			blobs := make([][]byte, 16)
			for i := range blobs {
				blobs[i] = append([]byte{byte(i)}, base...)
			}
			b.SetBytes(16 << 20)
			for i := 0; b.Loop(); i++ {
				r.store = &memStore{m: map[string][]byte{}}
				_, err := r.WithUploader(context.Background(), UploadOptions{}, func(ctx context.Context, up *Uploader) error {
					for j, d := range blobs {
						d[1] = byte(i) // distinct IDs per round
						d[2] = byte(j)
						if _, err := up.Add(ctx, DataBlob, r.hasher.Sum(d), d); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
