package chunk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/restic/chunker"
	"lukechampine.com/blake3"
)

func testParams() Params {
	return Params{Polynomial: chunker.Pol(0x3DA3358B4DC173), MinSize: DefaultMinSize, MaxSize: DefaultMaxSize, AverageBits: DefaultAverageBits, IDKey: make([]byte, 32)}
}

func randomData(seed uint64, n int) []byte {
	rnd := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

func split(t testing.TB, p Params, data []byte) []Chunk {
	s, err := NewSplitter(p)
	if err != nil {
		t.Fatal(err)
	}
	s.Reset(bytes.NewReader(data))
	var out []Chunk
	for {
		c, err := s.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Data = append([]byte(nil), c.Data...)
		out = append(out, c)
	}
}

func TestSplitterBoundsAndReassembly(t *testing.T) {
	p := testParams()
	data := randomData(1, 40<<20)
	chunks := split(t, p, data)
	var joined []byte
	for i, c := range chunks {
		if i < len(chunks)-1 && (uint(len(c.Data)) < p.MinSize || uint(len(c.Data)) > p.MaxSize) {
			t.Errorf("chunk %d of %d bytes outside [%d, %d]", i, len(c.Data), p.MinSize, p.MaxSize)
		}
		joined = append(joined, c.Data...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("chunks do not reassemble the input")
	}
	// Cuts are rare before MinSize+window and then geometric with mean
	// 2^AverageBits, so chunks average about MinSize + 2^AverageBits.
	want := float64(p.MinSize + 1<<p.AverageBits)
	if avg := float64(len(data)) / float64(len(chunks)); avg < 0.8*want || avg > 1.2*want {
		t.Errorf("average chunk %.0f bytes, want about %.0f", avg, want)
	}
}

func TestSplitterReuseAndShift(t *testing.T) {
	p := testParams()
	data := randomData(2, 20<<20)
	a := split(t, p, data)
	// An insertion at the front shifts content but most chunks survive.
	shifted := append([]byte("inserted bytes"), data...)
	b := split(t, p, shifted)
	ids := map[ID]bool{}
	for _, c := range a {
		ids[c.ID] = true
	}
	shared := 0
	for _, c := range b {
		if ids[c.ID] {
			shared++
		}
	}
	if shared < len(a)-2 {
		t.Errorf("after a 14-byte insertion only %d of %d chunks are shared", shared, len(a))
	}
}

func TestKeyedIDs(t *testing.T) {
	k1, k2 := make([]byte, 32), make([]byte, 32)
	k2[0] = 1
	h1, _ := NewHasher(k1)
	h2, _ := NewHasher(k2)
	if h1.Sum([]byte("x")) == h2.Sum([]byte("x")) {
		t.Fatal("IDs do not depend on the key")
	}
	if a, b := h1.Sum([]byte("x")), h1.Sum([]byte{'x'}); a != b {
		t.Fatal("IDs are not deterministic")
	}
	// Sum reuses hash states: one left from a long input must not leak
	// into the next ID.
	h1.Sum(make([]byte, 100<<10))
	fresh := h1.New()
	fresh.Write([]byte("x"))
	if a := h1.Sum([]byte("x")); !bytes.Equal(a[:], fresh.Sum(nil)) {
		t.Fatal("Sum after a long input differs from a fresh hash")
	}
	id := h1.Sum([]byte("x"))
	back, err := ParseID(id.String())
	if err != nil || back != id {
		t.Fatalf("ParseID round trip: %v", err)
	}
}

func TestParamsValidate(t *testing.T) {
	good := testParams()
	cases := []struct {
		name string
		mod  func(*Params)
	}{
		{"reducible polynomial", func(p *Params) { p.Polynomial = 4 }},
		{"short key", func(p *Params) { p.IDKey = p.IDKey[:16] }},
		{"min above max", func(p *Params) { p.MinSize = p.MaxSize + 1 }},
		{"average bits", func(p *Params) { p.AverageBits = 40 }},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		p := testParams()
		c.mod(&p)
		if p.Validate() == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	p, err := NewParams()
	if err != nil || p.Validate() != nil {
		t.Fatalf("NewParams: %v", err)
	}
}

func BenchmarkSplitAndHash(b *testing.B) {
	data := randomData(3, 64<<20)
	s, _ := NewSplitter(testParams())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s.Reset(bytes.NewReader(data))
		for {
			if _, err := s.Next(); err != nil {
				break
			}
		}
	}
}

func BenchmarkCutOnly(b *testing.B) {
	data := randomData(3, 64<<20)
	s, _ := NewSplitter(testParams())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		s.Reset(bytes.NewReader(data))
		for {
			if _, err := s.Cut(); err != nil {
				break
			}
		}
	}
}

func BenchmarkHash1MiB(b *testing.B) {
	data := randomData(4, 1<<20)
	h, _ := NewHasher(make([]byte, 32))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h.Sum(data)
	}
}

// TestSerialHashIsBLAKE3 holds the serial hash to the blake3 package at
// every boundary of its tree: 64-byte blocks, 1 KiB chunks, 16 KiB groups
// and powers of two of them; keyed (chunk IDs) and not (pack IDs); in one
// piece, with the input's capacity ending at len (the last group is
// copied) or past it (the SIMD pass reads bytes it must then ignore), and
// streamed in pieces of every size.
func TestSerialHashIsBLAKE3(t *testing.T) {
	key := [32]byte(randomData(7, 32))
	h, err := NewHasher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	const k = 1024
	lengths := []int{0, 1, 63, 64, 65, k - 1, k, k + 1, 2*k - 1, 2 * k, 15*k + 3, 16*k - 1, 16 * k, 16*k + 1,
		17 * k, 32*k - 1, 32 * k, 32*k + 1, 48*k + 5, 64 * k, 100_000, 128 * k, 128*k + 1, 1 << 20, 1<<20 + 17, 3<<20 + k - 1}
	data := randomData(8, 4<<20)
	rnd := rand.New(rand.NewPCG(9, 9))
	for _, n := range lengths {
		for _, c := range []struct {
			name string
			in   []byte
		}{
			{"cap=len", append([]byte(nil), data[:n]...)},
			{"cap>len", data[:n]},
			{"unaligned", data[5 : 5+n]},
		} {
			want := blake3.New(IDSize, key[:])
			want.Write(c.in)
			if got := h.Sum(c.in); !bytes.Equal(got[:], want.Sum(nil)) {
				t.Errorf("%d bytes, %s: Sum %x, blake3 %x", n, c.name, got, want.Sum(nil))
			}
		}
		for _, c := range []struct {
			name string
			key  *[32]byte
		}{
			{"keyed", &key},
			{"unkeyed", nil},
		} {
			ref := blake3.New(32, nil)
			if c.key != nil {
				ref = blake3.New(32, c.key[:])
			}
			ref.Write(data[:n])
			s := NewBLAKE3(c.key)
			s.Write([]byte("left over from before Reset"))
			s.Reset()
			for p := data[:n]; len(p) > 0; {
				step := min(len(p), 1+rnd.IntN(40*k))
				if rnd.IntN(4) == 0 {
					step = min(len(p), 16*k*(1+rnd.IntN(3)))
				}
				s.Write(p[:step])
				p = p[step:]
			}
			if got, want := s.Sum(nil), ref.Sum(nil); !bytes.Equal(got, want) {
				t.Errorf("%d bytes streamed, %s: %x, blake3 %x", n, c.name, got, want)
			}
		}
	}
}

// BenchmarkHash128KiBParallel hashes average-sized chunks on every core,
// as a backup does.
func BenchmarkHash128KiBParallel(b *testing.B) {
	data := randomData(4, 128<<10)
	h, _ := NewHasher(make([]byte, 32))
	b.SetBytes(int64(len(data)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Sum(data)
		}
	})
}

// BenchmarkPackID hashes a 16 MiB pack written blob by blob (45 KB, about
// a compressed 128 KiB chunk), as a pack's ID is computed.
func BenchmarkPackID(b *testing.B) {
	data := randomData(5, 16<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h := NewBLAKE3(nil)
		for p := data; len(p) > 0; {
			n := min(len(p), 45_000)
			h.Write(p[:n])
			p = p[n:]
		}
		h.Sum(nil)
	}
}
