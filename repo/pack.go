package repo

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"

	"lukechampine.com/blake3"

	"github.com/cairn-backup/cairn/chunk"
)

// PackID names a pack by the BLAKE3-256 hash of its bytes.
type PackID [32]byte

func (id PackID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for messages.
func (id PackID) Short() string { return hex.EncodeToString(id[:4]) }

// ObjectName is the pack's name in the store.
func (id PackID) ObjectName() string {
	s := id.String()
	return "data/" + s[:2] + "/" + s
}

// ParsePackID parses a 64-digit hex pack ID.
func ParsePackID(s string) (PackID, error) {
	var id PackID
	if len(s) != 64 {
		return id, fmt.Errorf("pack ID %q: want 64 hex digits", s)
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

// BlobEntry locates one blob inside a pack.
type BlobEntry struct {
	Type      BlobType
	ID        chunk.ID
	Offset    uint32 // of the sealed blob inside the pack
	Length    uint32 // of the sealed blob
	RawLength uint32 // of the plaintext
}

// PackInfo is a pack's table of contents.
type PackInfo struct {
	ID    PackID
	Size  int64
	Blobs []BlobEntry
}

const (
	packHeaderAD = "cairn pack header v1"
	packVersion  = 1
	// trailerSize is the uint32 length of the sealed header at a pack's end.
	trailerSize = 4
	// maxPackBlobs bounds a pack's table of contents (about 4.5 MB) so a
	// pack of many tiny files stays readable in one range request.
	maxPackBlobs = 100_000
	// MaxPackHeader caps the sealed header a reader will fetch.
	MaxPackHeader = 8 << 20
	// MaxPackSize caps any pack a reader will accept as a whole.
	MaxPackSize = 1 << 30
)

// packedBlob is a sealed blob in an open pack's arena.
type packedBlob struct {
	t        BlobType
	id       chunk.ID
	off, len uint32 // in the arena
	rawLen   uint32 // 48 bytes a blob, not 64 with ints: a pack of tiny files lists 100,000
}

// encodePackHeader encodes the table of contents; offsets are implied by
// the order and lengths.
func encodePackHeader(blobs []BlobEntry) []byte {
	e := enc{b: make([]byte, 0, 2+len(blobs)*40)}
	e.byte(packVersion)
	e.uvarint(uint64(len(blobs)))
	for _, b := range blobs {
		e.byte(byte(b.Type))
		e.id(b.ID)
		e.uvarint(uint64(b.Length))
		e.uvarint(uint64(b.RawLength))
	}
	return e.b
}

// DecodePackHeader decodes a plaintext table of contents for a pack whose
// blob area is dataLen bytes long.
func DecodePackHeader(plain []byte, dataLen int64) ([]BlobEntry, error) {
	d := dec{b: plain}
	if v := d.byte(); d.err == nil && v != packVersion {
		return nil, fmt.Errorf("pack header version %d: %w", v, ErrCorrupt)
	}
	n := d.count(1+chunk.IDSize+2, maxPackBlobs, "pack blobs")
	blobs := make([]BlobEntry, 0, n)
	var off int64
	for i := 0; i < n && d.err == nil; i++ {
		t := BlobType(d.byte())
		id := d.id()
		length := d.uvarint()
		raw := d.uvarint()
		if d.err != nil {
			break
		}
		if !t.Valid() || length < Overhead+1 || length > MaxBlobSize+Overhead+1024 || raw > MaxBlobSize || off+int64(length) > dataLen {
			return nil, fmt.Errorf("pack header entry %d (type %d, %d bytes at %d) is invalid: %w", i, t, length, off, ErrCorrupt)
		}
		blobs = append(blobs, BlobEntry{Type: t, ID: id, Offset: uint32(off), Length: uint32(length), RawLength: uint32(raw)})
		off += int64(length)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("pack header has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	if off != dataLen {
		return nil, fmt.Errorf("pack header covers %d bytes of %d: %w", off, dataLen, ErrCorrupt)
	}
	return blobs, nil
}

// assemblePack lays the arena's blobs out in a shuffled order, verifies
// every one by opening it again (so a compressor or memory fault cannot
// poison dedup forever), and seals the table of contents. The pack is
// returned as pieces: each blob where it was sealed in the arena, then
// the header, so the arena must stay untouched until the pack is stored.
// pieces and hdr are reused when large enough.
func (r *Repository) assemblePack(arena []byte, blobs []packedBlob, pieces Pieces, hdr []byte, sc *scratch) (PackInfo, Pieces, []byte, error) {
	pieces = pieces[:0]
	if err := shuffle(blobs); err != nil {
		return PackInfo{}, pieces, hdr, err
	}
	entries := make([]BlobEntry, len(blobs))
	off := 0
	for i, b := range blobs {
		sealed := arena[b.off : b.off+b.len]
		entries[i] = BlobEntry{Type: b.t, ID: b.id, Offset: uint32(off), Length: b.len, RawLength: b.rawLen}
		if err := r.verifyBlob(entries[i], sealed, sc); err != nil {
			return PackInfo{}, pieces, hdr, fmt.Errorf("verify blob before upload: %w", err)
		}
		pieces = append(pieces, sealed)
		off += int(b.len)
	}
	hdr = r.sealer.seal(hdr[:0], encodePackHeader(entries), []byte(packHeaderAD))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(hdr)))
	pieces = append(pieces, hdr)
	// The pack is hashed on this goroutine: assembly already runs on
	// every core, and blake3.Hasher would start goroutines for each blob.
	h := chunk.NewBLAKE3(nil)
	for _, p := range pieces {
		h.Write(p)
	}
	var id PackID
	h.Sum(id[:0])
	return PackInfo{ID: id, Size: int64(off + len(hdr)), Blobs: entries}, pieces, hdr, nil
}

// shuffle permutes blobs with a cryptographic source, so the order of
// blobs in a pack says nothing about the order of data in files.
func shuffle(blobs []packedBlob) error {
	for i := len(blobs) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return err
		}
		k := int(j.Int64())
		blobs[i], blobs[k] = blobs[k], blobs[i]
	}
	return nil
}

// parsePackTrailer returns the length of the sealed header from the last
// trailerSize bytes of a pack of size packSize.
func parsePackTrailer(trailer []byte, packSize int64) (int64, error) {
	if len(trailer) != trailerSize {
		return 0, fmt.Errorf("pack trailer of %d bytes: %w", len(trailer), ErrCorrupt)
	}
	n := int64(binary.LittleEndian.Uint32(trailer))
	if n < Overhead || n > MaxPackHeader || n+trailerSize > packSize {
		return 0, fmt.Errorf("pack header length %d in pack of %d bytes: %w", n, packSize, ErrCorrupt)
	}
	return n, nil
}

func blake3sum(b []byte) [32]byte { return blake3.Sum256(b) }

// MarshalText encodes the pack ID as hex.
func (id PackID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex pack ID.
func (id *PackID) UnmarshalText(b []byte) error {
	v, err := ParsePackID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
