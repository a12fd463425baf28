package repo

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestZstdAppend holds for whichever encoder the build has (make test
// runs this package's blob tests with and without cgo): the frame lands
// after what dst held, and the decoder that reads blobs back restores src.
func TestZstdAppend(t *testing.T) {
	rnd := rand.New(rand.NewPCG(2, 2))
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("func (r *Repository) ReadBlob(ctx context.Context)\n"), 40000)
	cases := []struct {
		name   string
		prefix []byte
		src    []byte
		room   int // spare capacity of dst beyond the prefix
	}{
		{"empty", nil, nil, 0},
		{"one byte after a flag", []byte{compressZstd}, []byte{9}, 0},
		{"text into a roomy buffer", []byte{compressZstd}, text, 4 << 20},
		{"text into a small buffer", []byte{compressZstd}, text, 10},
		{"random, larger than the buffer", []byte("prefix"), random, 1 << 20},
		{"largest blob", nil, bytes.Repeat([]byte{'x'}, MaxBlobSize), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := append(make([]byte, 0, len(c.prefix)+c.room), c.prefix...)
			out, ok := zstdAppend(dst, c.src)
			if !ok {
				t.Fatal("compression failed")
			}
			if !bytes.Equal(out[:len(c.prefix)], c.prefix) {
				t.Fatalf("prefix overwritten: %q", out[:len(c.prefix)])
			}
			got, err := zdec.DecodeAll(out[len(c.prefix):], nil)
			if err != nil || !bytes.Equal(got, c.src) {
				t.Fatalf("decoded %d bytes of %d: %v", len(got), len(c.src), err)
			}
			if len(c.src) > 1000 && bytes.Equal(c.src[:1000], text[:1000]) && len(out)-len(c.prefix) > len(c.src)/20 {
				t.Errorf("text compressed only to %d of %d bytes", len(out)-len(c.prefix), len(c.src))
			}
		})
	}
}

// TestZstdAppendConcurrent: savers compress at once, each with its own
// context; a shared one would garble frames (and the race detector, which
// cannot see into C, would not say so).
func TestZstdAppendConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 7))
			for range 40 {
				src := bytes.Repeat([]byte{byte(rnd.Uint32())}, 1000+rnd.IntN(200000))
				for i := 0; i < len(src); i += 97 {
					src[i] = byte(rnd.Uint32())
				}
				out, ok := zstdAppend(nil, src)
				got, err := zdec.DecodeAll(out, nil)
				if !ok || err != nil || !bytes.Equal(got, src) {
					errs <- "a frame did not decode to its source"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
