package repo

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// goSource returns up to n bytes of the Go distribution's own sources:
// real text with a real ratio on every machine that builds cairn, unlike
// benchData's repeated line.
func goSource(b *testing.B, n int) []byte {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatalf("go env GOROOT: %v", err)
	}
	var out []byte
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= n {
			return fs.SkipAll
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".go") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, data...)
		}
		return nil
	})
	if err != nil && err != fs.SkipAll {
		b.Fatal(err)
	}
	if len(out) < n {
		b.Skipf("only %d bytes of Go source under %s", len(out), root)
	}
	return out[:n]
}

// BenchmarkZstdAppend compresses 128 KiB pieces of Go source (the average
// chunk), on one goroutine and on every core at once, as the savers do.
func BenchmarkZstdAppend(b *testing.B) {
	const piece = 128 << 10
	src := goSource(b, 64*piece)
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(piece)
		buf := make([]byte, 0, 2*piece)
		i := 0
		for b.Loop() {
			buf, _ = zstdAppend(buf[:0], src[i*piece:(i+1)*piece])
			i = (i + 1) % 64
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(piece)
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 0, 2*piece)
			i := 0
			for pb.Next() {
				buf, _ = zstdAppend(buf[:0], src[i*piece:(i+1)*piece])
				i = (i + 1) % 64
			}
		})
	})
}
