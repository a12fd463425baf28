package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// Index objects summarise packs so the bucket is self-describing: reading
// every index object tells where every blob is without opening any pack.

const (
	indexVersion  = 1
	maxIndexPacks = 1 << 16
	// MaxIndexObject caps an index object a reader will fetch.
	MaxIndexObject = 256 << 20
)

func indexName(id string) string { return "index/" + id }

// EncodeIndex returns the plaintext of an index object.
func EncodeIndex(packs []PackInfo) []byte {
	e := enc{}
	e.byte(indexVersion)
	e.uvarint(uint64(len(packs)))
	for _, p := range packs {
		e.b = append(e.b, p.ID[:]...)
		e.uvarint(uint64(p.Size))
		e.uvarint(uint64(len(p.Blobs)))
		for _, b := range p.Blobs {
			e.byte(byte(b.Type))
			e.id(b.ID)
			e.uvarint(uint64(b.Offset))
			e.uvarint(uint64(b.Length))
			e.uvarint(uint64(b.RawLength))
		}
	}
	return e.b
}

// DecodeIndex decodes and validates an index object's plaintext.
func DecodeIndex(b []byte) ([]PackInfo, error) {
	d := dec{b: b}
	if v := d.byte(); d.err == nil && v != indexVersion {
		return nil, fmt.Errorf("index version %d: %w", v, ErrCorrupt)
	}
	np := d.count(34, maxIndexPacks, "index packs")
	packs := make([]PackInfo, 0, np)
	for i := 0; i < np && d.err == nil; i++ {
		var p PackInfo
		copy(p.ID[:], d.raw(32))
		p.Size = int64(d.uvarint())
		nb := d.count(36, maxPackBlobs, "index blobs")
		p.Blobs = make([]BlobEntry, 0, nb)
		for j := 0; j < nb && d.err == nil; j++ {
			e := BlobEntry{Type: BlobType(d.byte()), ID: d.id()}
			off, length, raw := d.uvarint(), d.uvarint(), d.uvarint()
			if d.err != nil {
				break
			}
			if !e.Type.Valid() || p.Size < 0 || p.Size > MaxPackSize || off+length > uint64(p.Size) || length < Overhead || raw > MaxBlobSize {
				return nil, fmt.Errorf("index entry for pack %s blob %d is invalid: %w", p.ID.Short(), j, ErrCorrupt)
			}
			e.Offset, e.Length, e.RawLength = uint32(off), uint32(length), uint32(raw)
			p.Blobs = append(p.Blobs, e)
		}
		packs = append(packs, p)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode index: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("index has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return packs, nil
}

// IndexObject is an index object a session or collection wrote, and the
// packs it describes.
type IndexObject struct {
	Name  string
	Packs []PackID
}

// indexObjectBlobs bounds the blob entries of an index object written by
// WriteIndexes, about 3 MiB of plaintext. One object per session held a
// backup of a million small files in memory twice more at its end (38 MB
// encoded, 36 MB sealed), and past about five million blobs it would
// outgrow MaxIndexObject, which readers refuse.
const indexObjectBlobs = 1 << 16

// WriteIndexes stores index objects describing packs, each with at most
// indexObjectBlobs entries unless one pack alone has more (a pack is
// never split between objects), and returns them in order.
func (r *Repository) WriteIndexes(ctx context.Context, packs []PackInfo) ([]IndexObject, error) {
	var objs []IndexObject
	for _, group := range groupPacks(packs, indexObjectBlobs) {
		name, err := r.WriteIndex(ctx, group)
		if err != nil {
			return objs, err
		}
		objs = append(objs, IndexObject{Name: name, Packs: PackIDs(group)})
	}
	return objs, nil
}

// PackIDs returns the IDs of packs.
func PackIDs(packs []PackInfo) []PackID {
	ids := make([]PackID, len(packs))
	for i, p := range packs {
		ids[i] = p.ID
	}
	return ids
}

// groupPacks cuts packs into consecutive runs of at most maxBlobs blob
// entries and maxIndexPacks packs; a pack with more blobs than maxBlobs is
// a run of its own.
func groupPacks(packs []PackInfo, maxBlobs int) [][]PackInfo {
	var groups [][]PackInfo
	start, blobs := 0, 0
	for i, p := range packs {
		if groupFull(i-start, blobs, len(p.Blobs), maxBlobs) {
			groups = append(groups, packs[start:i])
			start, blobs = i, 0
		}
		blobs += len(p.Blobs)
	}
	if start < len(packs) {
		groups = append(groups, packs[start:])
	}
	return groups
}

// groupFull reports whether a group of packs holding blobs entries must
// close before a pack of next entries joins it.
func groupFull(packs, blobs, next, maxBlobs int) bool {
	return packs > 0 && (blobs+next > maxBlobs || packs == maxIndexPacks)
}

// WriteIndex stores an index object for packs and returns its name.
func (r *Repository) WriteIndex(ctx context.Context, packs []PackInfo) (string, error) {
	return r.writeIndexPlain(ctx, EncodeIndex(packs))
}

// writeIndexPlain stores an index object of the given plaintext.
func (r *Repository) writeIndexPlain(ctx context.Context, plain []byte) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := indexName(hex.EncodeToString(b[:]))
	sealed := r.sealer.seal(nil, plain, []byte(name))
	if err := r.store.Put(ctx, name, sealed); err != nil {
		return "", fmt.Errorf("write index: %w", err)
	}
	return name, nil
}

// ReadIndex reads and verifies one index object.
func (r *Repository) ReadIndex(ctx context.Context, name string) ([]PackInfo, error) {
	if !strings.HasPrefix(name, "index/") {
		return nil, fmt.Errorf("index object name %q", name)
	}
	sealed, err := r.store.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	if len(sealed) > MaxIndexObject {
		return nil, fmt.Errorf("index %s of %d bytes: %w", name, len(sealed), ErrCorrupt)
	}
	plain, err := r.sealer.open(nil, sealed, []byte(name))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", name, err)
	}
	packs, err := DecodeIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", name, err)
	}
	return packs, nil
}

// ListIndexNames lists the index objects in the store.
func (r *Repository) ListIndexNames(ctx context.Context) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := r.store.List(ctx, "index/", func(oi ObjectInfo) error {
		out = append(out, oi)
		return nil
	})
	return out, err
}

// DeleteIndex removes an index object.
func (r *Repository) DeleteIndex(ctx context.Context, name string) error {
	return r.store.Delete(ctx, name)
}
