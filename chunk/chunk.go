package chunk

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/restic/chunker"
)

// IDSize is the length in bytes of a chunk (or tree) ID.
const IDSize = 32

// ID names a chunk or tree by the keyed hash of its plaintext.
type ID [IDSize]byte

// String returns the ID in lower-case hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is the zero ID, which names nothing.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses a 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("chunk ID %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk ID %q: %w", s, err)
	}
	return id, nil
}

// Params fix how a repository cuts and names chunks. They are chosen once at
// init and stored in the encrypted repository config.
type Params struct {
	Polynomial  chunker.Pol `json:"polynomial"`
	MinSize     uint        `json:"min_size"`
	MaxSize     uint        `json:"max_size"`
	AverageBits int         `json:"average_bits"`
	IDKey       []byte      `json:"id_key"`
}

// Defaults for chunk sizes: 64 KiB minimum, 128 KiB average, 1 MiB maximum.
// restic's 512 KiB / 1 MiB / 8 MiB were the first choice; on ten
// consecutive Go releases, 128 KiB chunks stored 13 % fewer bytes (a patch
// release rebuilds every binary, and most of a binary's 128 KiB stretches
// survive it while few of its 1 MiB stretches do), cost 0.8 % of ratio on
// the first version and lowered peak RSS, since no chunk in flight exceeds
// 1 MiB. The price is an index of about one entry per 190 KiB of unique
// data, which lives on disk in Badger. A chunk reaches the maximum only
// when 960 KiB pass without a boundary (p = e^-7.5) or the data is
// low-entropy. `go test -bench . ./chunk` measures throughput and agent's
// dedup tests check the edit cost.
const (
	DefaultMinSize     = 64 << 10
	DefaultMaxSize     = 1 << 20
	DefaultAverageBits = 17
)

// NewParams draws a random polynomial and ID key and sets default sizes.
func NewParams() (Params, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Params{}, fmt.Errorf("draw chunker polynomial: %w", err)
	}
	key := make([]byte, 32)
	if _, err := randRead(key); err != nil {
		return Params{}, fmt.Errorf("draw chunk ID key: %w", err)
	}
	return Params{
		Polynomial:  pol,
		MinSize:     DefaultMinSize,
		MaxSize:     DefaultMaxSize,
		AverageBits: DefaultAverageBits,
		IDKey:       key,
	}, nil
}

// Validate reports params that would make chunking fail or degenerate.
func (p Params) Validate() error {
	switch {
	case !p.Polynomial.Irreducible():
		return errors.New("chunker polynomial is not irreducible")
	case p.Polynomial.Deg() > 53:
		return errors.New("chunker polynomial degree above 53")
	case len(p.IDKey) != 32:
		return fmt.Errorf("chunk ID key is %d bytes, want 32", len(p.IDKey))
	case p.MinSize < 64 || p.MaxSize < p.MinSize || p.MaxSize > 64<<20:
		return fmt.Errorf("chunk sizes min %d max %d out of range", p.MinSize, p.MaxSize)
	case p.AverageBits < 10 || p.AverageBits > 26:
		return fmt.Errorf("chunk average bits %d out of range 10..26", p.AverageBits)
	}
	return nil
}

// Hasher computes chunk IDs. It is safe for concurrent use.
type Hasher struct {
	key [32]byte
	// states keeps hash states for Sum (18 KB, most of it the buffer of
	// a last group): one per chunk hashed and one per blob verified
	// before upload.
	states sync.Pool
}

// NewHasher returns a Hasher for the given 32-byte key.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("chunk ID key is %d bytes, want 32", len(key))
	}
	h := &Hasher{}
	copy(h.key[:], key)
	return h, nil
}

// New returns a streaming hash whose Sum(nil) is the ID of what was
// written to it.
func (h *Hasher) New() hash.Hash { return newSerialHash(&h.key) }

// Sum returns the ID of data. It hashes on the calling goroutine.
func (h *Hasher) Sum(data []byte) ID {
	s, _ := h.states.Get().(*serialHash)
	if s == nil {
		s = newSerialHash(&h.key)
	}
	id := ID(s.sum(data))
	h.states.Put(s)
	return id
}

// Chunk is one piece of a stream.
type Chunk struct {
	ID   ID
	Data []byte // valid until the next call of Splitter.Next
}

// Splitter cuts one stream after another into chunks. A Splitter is not safe
// for concurrent use; give each worker its own and Reset it per file so its
// buffers are reused.
type Splitter struct {
	p      Params
	hasher *Hasher
	c      *chunker.Chunker
	buf    []byte
}

// NewSplitter returns a splitter for params p.
func NewSplitter(p Params) (*Splitter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	h, err := NewHasher(p.IDKey)
	if err != nil {
		return nil, err
	}
	c := chunker.NewWithBoundaries(nil, p.Polynomial, p.MinSize, p.MaxSize)
	// The buffer grows to the largest chunk met rather than starting at
	// MaxSize: most chunks of most trees are far smaller (every file
	// below MinSize is one chunk), and each reader holds one buffer.
	return &Splitter{p: p, hasher: h, c: c, buf: make([]byte, 0, min(p.MaxSize, 2*p.MinSize))}, nil
}

// Reset makes the splitter read from r.
func (s *Splitter) Reset(r io.Reader) {
	s.c.ResetWithBoundaries(r, s.p.Polynomial, s.p.MinSize, s.p.MaxSize)
	// ResetWithBoundaries restores the library's 1 MiB default mask.
	s.c.SetAverageBits(s.p.AverageBits)
}

// Next returns the next chunk, or io.EOF after the last one. The returned
// data is overwritten by the next call.
func (s *Splitter) Next() (Chunk, error) {
	data, err := s.Cut()
	if err != nil {
		return Chunk{}, err
	}
	return Chunk{ID: s.hasher.Sum(data), Data: data}, nil
}

// Cut returns the next chunk's bytes without hashing it, for callers that
// hash on another goroutine.
func (s *Splitter) Cut() ([]byte, error) {
	c, err := s.c.Next(s.buf)
	if err != nil {
		return nil, err
	}
	if cap(c.Data) > cap(s.buf) {
		s.buf = c.Data[:0] // grown by the chunker: keep it
	}
	return c.Data, nil
}

// MarshalText encodes the ID as hex, so JSON carries it as a string.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
