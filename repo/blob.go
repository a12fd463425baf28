package repo

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/chunk"
)

// BlobType says what a blob holds. It is part of every blob's associated
// data, so a tree can never be passed off as data or the other way round.
type BlobType uint8

const (
	DataBlob BlobType = 1
	TreeBlob BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// Valid reports whether t is a known type.
func (t BlobType) Valid() bool { return t == DataBlob || t == TreeBlob }

// MaxBlobSize caps a blob's plaintext (the largest chunk is 64 MiB, a tree is
// capped lower); decoders refuse anything claiming more before allocating.
const MaxBlobSize = 64 << 20

const (
	compressNone byte = 0
	compressZstd byte = 1
)

var (
	zenc, _ = zstd.NewWriter(nil,
		// Level 3 equivalent: the speed of `zstd -3` at close to its ratio.
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		// Chunks average 1 MiB, so a 1 MiB window loses little ratio while
		// each encoder holds ~1/8 of the default's memory (measured: same
		// speed, 18 KB instead of 124 KB allocated per 1 MiB blob and no
		// 8 MiB history per encoder).
		zstd.WithWindowSize(1<<20),
		zstd.WithLowerEncoderMem(true),
		zstd.WithZeroFrames(true))
	zdec, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxBlobSize),
		zstd.WithDecoderMaxWindow(MaxBlobSize))
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// Buffers for sealed blobs and whole packs are reused: fresh multi-MiB
// allocations are zeroed and page-faulted on first touch, which measured
// as the largest cost of writing a pack.
var (
	sealedPool sync.Pool
	packPool   sync.Pool
)

// getBuf returns an empty buffer of at least capacity n from pool.
func getBuf(pool *sync.Pool, n int) *[]byte {
	if v := pool.Get(); v != nil {
		b := v.(*[]byte)
		if cap(*b) >= n {
			*b = (*b)[:0]
			return b
		}
	}
	b := make([]byte, 0, n)
	return &b
}

func blobAD(t BlobType, id chunk.ID) []byte {
	ad := make([]byte, 1+chunk.IDSize)
	ad[0] = byte(t)
	copy(ad[1:], id[:])
	return ad
}

// sealBlob compresses plaintext when that saves at least 1/32 of it, then
// seals flag||payload with the blob's type and ID as associated data. It
// appends to dst and returns the result and the plaintext length.
func (r *Repository) sealBlob(dst []byte, t BlobType, id chunk.ID, plaintext []byte) []byte {
	bp := bufPool.Get().(*[]byte)
	buf := append((*bp)[:0], compressZstd)
	buf = zenc.EncodeAll(plaintext, buf)
	if len(buf)-1 >= len(plaintext)-len(plaintext)/32 {
		buf = append(buf[:0], compressNone)
		buf = append(buf, plaintext...)
	}
	out := r.sealer.seal(dst, buf, blobAD(t, id))
	*bp = buf[:0]
	bufPool.Put(bp)
	return out
}

// openBlob authenticates, decrypts and decompresses a sealed blob and checks
// that the plaintext hashes to id. Any failure wraps ErrCorrupt.
func (r *Repository) openBlob(t BlobType, id chunk.ID, sealed []byte, rawLen int) ([]byte, error) {
	if rawLen < 0 || rawLen > MaxBlobSize {
		return nil, fmt.Errorf("%s blob %s claims %d bytes: %w", t, id.Short(), rawLen, ErrCorrupt)
	}
	inner, err := r.sealer.open(nil, sealed, blobAD(t, id))
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %w", t, id.Short(), err)
	}
	plain, err := decodeBlobPayload(inner, rawLen)
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %w", t, id.Short(), err)
	}
	if got := r.hasher.Sum(plain); got != id {
		return nil, fmt.Errorf("%s blob %s: content hashes to %s: %w", t, id.Short(), got.Short(), ErrCorrupt)
	}
	return plain, nil
}

// decodeBlobPayload undoes the compression of an authenticated blob payload
// (flag byte, then raw or zstd data) and checks its length.
func decodeBlobPayload(inner []byte, rawLen int) ([]byte, error) {
	if rawLen < 0 || rawLen > MaxBlobSize {
		return nil, fmt.Errorf("claimed size %d: %w", rawLen, ErrCorrupt)
	}
	if len(inner) == 0 {
		return nil, fmt.Errorf("empty payload: %w", ErrCorrupt)
	}
	var plain []byte
	switch inner[0] {
	case compressNone:
		plain = inner[1:]
	case compressZstd:
		var err error
		plain, err = zdec.DecodeAll(inner[1:], make([]byte, 0, rawLen))
		if err != nil {
			return nil, fmt.Errorf("decompress: %v: %w", err, ErrCorrupt)
		}
	default:
		return nil, fmt.Errorf("unknown compression %d: %w", inner[0], ErrCorrupt)
	}
	if len(plain) != rawLen {
		return nil, fmt.Errorf("%d bytes, index says %d: %w", len(plain), rawLen, ErrCorrupt)
	}
	return plain, nil
}

// verifyBlob checks a sealed blob like openBlob, decrypting into a pooled
// buffer instead of allocating one per blob.
func (r *Repository) verifyBlob(e BlobEntry, sealed []byte) error {
	bp := getBuf(&sealedPool, len(sealed))
	defer sealedPool.Put(bp)
	inner, err := r.sealer.open((*bp)[:0], sealed, blobAD(e.Type, e.ID))
	if err != nil {
		return fmt.Errorf("%s blob %s: %w", e.Type, e.ID.Short(), err)
	}
	*bp = inner
	plain := inner
	if len(inner) > 0 && inner[0] == compressNone {
		plain = inner[1:]
		if len(plain) != int(e.RawLength) {
			return fmt.Errorf("%s blob %s: %d bytes, want %d: %w", e.Type, e.ID.Short(), len(plain), e.RawLength, ErrCorrupt)
		}
	} else if plain, err = decodeBlobPayload(inner, int(e.RawLength)); err != nil {
		return fmt.Errorf("%s blob %s: %w", e.Type, e.ID.Short(), err)
	}
	if got := r.hasher.Sum(plain); got != e.ID {
		return fmt.Errorf("%s blob %s: content hashes to %s: %w", e.Type, e.ID.Short(), got.Short(), ErrCorrupt)
	}
	return nil
}
