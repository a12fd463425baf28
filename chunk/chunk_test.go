package chunk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/restic/chunker"
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
