package repo

import (
	"bytes"
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

// zdec decodes every blob this repository reads, whichever encoder wrote
// it: blobs come from the store, so they are parsed by Go code with size
// caps, never by C.
var zdec, _ = zstd.NewReader(nil,
	zstd.WithDecoderConcurrency(0),
	zstd.WithDecoderMaxMemory(MaxBlobSize),
	zstd.WithDecoderMaxWindow(MaxBlobSize))

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

// verifyBufSize fits the opened form of any blob.
const verifyBufSize = MaxBlobSize + 1024

func blobAD(t BlobType, id chunk.ID) []byte {
	ad := make([]byte, 1+chunk.IDSize)
	ad[0] = byte(t)
	copy(ad[1:], id[:])
	return ad
}

// sealBlob compresses plaintext when that saves at least 1/32 of it, then
// seals flag||payload with the blob's type and ID as associated data. It
// appends to dst and returns the result.
func (r *Repository) sealBlob(dst []byte, t BlobType, id chunk.ID, plaintext []byte) []byte {
	bp := blobPayload(plaintext)
	out := r.sealer.seal(dst, *bp, blobAD(t, id))
	putPayload(bp)
	return out
}

// blobPayload returns flag||data: plaintext zstd-compressed when that saves
// at least 1/32 of it, else as is. Its sealed size is len+Overhead, known
// before sealing, so the uploader can reserve exactly that much room. Give
// the buffer back with putPayload.
func blobPayload(plaintext []byte) *[]byte {
	bp := bufPool.Get().(*[]byte)
	buf := append((*bp)[:0], compressZstd)
	buf, ok := zstdAppend(buf, plaintext)
	if !ok || len(buf)-1 >= len(plaintext)-len(plaintext)/32 {
		buf = append(buf[:0], compressNone)
		buf = append(buf, plaintext...)
	}
	*bp = buf
	return bp
}

func putPayload(bp *[]byte) {
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}

// openBlob authenticates, decrypts and decompresses a sealed blob and checks
// that the plaintext hashes to id. Any failure wraps ErrCorrupt.
func (r *Repository) openBlob(t BlobType, id chunk.ID, sealed []byte, rawLen int) ([]byte, error) {
	var scratch []byte
	return r.openBlobInPlace(t, id, bytes.Clone(sealed), rawLen, &scratch)
}

// openBlobInPlace is openBlob for a sealed blob the caller owns and no
// longer needs: it decrypts over sealed and decompresses into *scratch
// (grown as needed), so reading many blobs allocates nothing per blob. The
// result aliases sealed or *scratch.
func (r *Repository) openBlobInPlace(t BlobType, id chunk.ID, sealed []byte, rawLen int, scratch *[]byte) ([]byte, error) {
	if rawLen < 0 || rawLen > MaxBlobSize {
		return nil, fmt.Errorf("%s blob %s claims %d bytes: %w", t, id.Short(), rawLen, ErrCorrupt)
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%s blob %s: sealed message of %d bytes is too short: %w", t, id.Short(), len(sealed), ErrCorrupt)
	}
	inner, err := r.sealer.open(sealed[nonceSize:nonceSize], sealed, blobAD(t, id))
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %w", t, id.Short(), err)
	}
	plain, err := decodeBlobPayload(inner, rawLen, *scratch)
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %w", t, id.Short(), err)
	}
	if len(inner) > 0 && inner[0] == compressZstd {
		*scratch = plain
	}
	if got := r.hasher.Sum(plain); got != id {
		return nil, fmt.Errorf("%s blob %s: content hashes to %s: %w", t, id.Short(), got.Short(), ErrCorrupt)
	}
	return plain, nil
}

// decodeBlobPayload undoes the compression of an authenticated blob payload
// (flag byte, then raw or zstd data) and checks its length.
// A compressed payload is decoded into dst's storage when it is large
// enough.
func decodeBlobPayload(inner []byte, rawLen int, dst []byte) ([]byte, error) {
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
		if cap(dst) < rawLen {
			dst = make([]byte, 0, rawLen)
		}
		plain, err = zdec.DecodeAll(inner[1:], dst[:0])
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

// scratch holds an uploader's reusable state for verifying blobs: a
// buffer to decrypt into and a streaming decompressor, which hashes a blob
// without ever holding its plaintext.
type scratch struct {
	opened []byte
	plain  []byte // a decompressed payload
	dec    *zstd.Decoder
}

// hashSlack is room the hash may read behind a payload: chunk.Hasher
// copies the last group of up to 16 KiB into a buffer of its own unless
// the slice's capacity reaches 16 KiB past the group's start.
const hashSlack = 16 << 10

func (sc *scratch) close() {
	if sc.dec != nil {
		sc.dec.Close()
	}
}

// verifyBlob checks a sealed blob like openBlob, with sc's buffers
// instead of allocations per blob.
func (r *Repository) verifyBlob(e BlobEntry, sealed []byte, sc *scratch) error {
	if len(sealed) > verifyBufSize+Overhead {
		return fmt.Errorf("%s blob %s: %d sealed bytes: %w", e.Type, e.ID.Short(), len(sealed), ErrCorrupt)
	}
	inner, err := r.sealer.open(sc.opened[:0], sealed, blobAD(e.Type, e.ID))
	if err != nil {
		return fmt.Errorf("%s blob %s: %w", e.Type, e.ID.Short(), err)
	}
	sc.opened = inner
	// The payload is hashed in one piece: fed to the hash in io.Copy's
	// 32 KiB steps it cost a buffer per blob and a dozen goroutines per
	// step inside blake3 (go1.24.0 initial backup: 50 MB of the 110 MB
	// this function allocated).
	var plain []byte
	switch {
	case len(inner) == 0:
		return fmt.Errorf("%s blob %s: empty payload: %w", e.Type, e.ID.Short(), ErrCorrupt)
	case inner[0] == compressNone:
		plain = inner[1:]
	case inner[0] == compressZstd:
		if sc.dec == nil {
			if sc.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(MaxBlobSize), zstd.WithDecoderMaxWindow(MaxBlobSize)); err != nil {
				return err
			}
		}
		if want := int(min(e.RawLength, MaxBlobSize)) + hashSlack; cap(sc.plain) < want {
			sc.plain = make([]byte, 0, want)
		}
		if plain, err = sc.dec.DecodeAll(inner[1:], sc.plain[:0]); err != nil {
			return fmt.Errorf("%s blob %s: decompress: %v: %w", e.Type, e.ID.Short(), err, ErrCorrupt)
		}
		sc.plain = plain
	default:
		return fmt.Errorf("%s blob %s: unknown compression %d: %w", e.Type, e.ID.Short(), inner[0], ErrCorrupt)
	}
	if len(plain) != int(e.RawLength) {
		return fmt.Errorf("%s blob %s: %d bytes, want %d: %w", e.Type, e.ID.Short(), len(plain), e.RawLength, ErrCorrupt)
	}
	if got := r.hasher.Sum(plain); got != e.ID {
		return fmt.Errorf("%s blob %s: content hashes to %s: %w", e.Type, e.ID.Short(), got.Short(), ErrCorrupt)
	}
	return nil
}
