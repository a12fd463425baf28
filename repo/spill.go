package repo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"

	"lukechampine.com/blake3"
)

// indexSpill keeps the blob entries of a session's landed packs until the
// session ends and writes its index objects. Index objects are written
// only then, so that a collection never sees packs of an unfinished
// session described as if they were settled. Each index object's worth
// of entries goes, encoded as that object, to an unlinked temporary
// file: a backup of a million small files held 48 MB of entries in
// memory until its end otherwise.
type indexSpill struct {
	dir string // where the temporary file goes; "" is os.TempDir()

	mu      sync.Mutex
	pending []PackInfo // landed, not yet spilled
	blobs   int        // entries in pending
	f       *os.File
	size    int64
	groups  []spilledGroup
}

// spilledGroup is the plaintext of one index object in the file.
type spilledGroup struct {
	off, n int64
	sum    [32]byte
	packs  []PackID
}

// add records a landed pack. Packs are grouped as WriteIndexes groups
// them.
func (s *indexSpill) add(p PackInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if groupFull(len(s.pending), s.blobs, len(p.Blobs), indexObjectBlobs) {
		if err := s.spillLocked(); err != nil {
			return err
		}
	}
	s.pending = append(s.pending, p)
	s.blobs += len(p.Blobs)
	return nil
}

func (s *indexSpill) spillLocked() error {
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "cairn-index-spill-*")
		if err != nil {
			return fmt.Errorf("index spill: %w", err)
		}
		// Unlinked at once: the space is freed with the process, however
		// it ends.
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return fmt.Errorf("index spill: %w", err)
		}
		s.f = f
	}
	plain := EncodeIndex(s.pending)
	if _, err := s.f.WriteAt(plain, s.size); err != nil {
		return fmt.Errorf("index spill in %s: %w", s.f.Name(), err)
	}
	g := spilledGroup{off: s.size, n: int64(len(plain)), sum: blake3.Sum256(plain), packs: PackIDs(s.pending)}
	s.groups = append(s.groups, g)
	s.size += g.n
	clear(s.pending)
	s.pending, s.blobs = s.pending[:0], 0
	return nil
}

// write stores the index objects of every pack added, spilled groups
// first. A spilled group that does not read back as written is an error:
// the local disk changed it.
func (s *indexSpill) write(ctx context.Context, r *Repository) ([]IndexObject, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var objs []IndexObject
	var plain []byte
	for _, g := range s.groups {
		plain = slices.Grow(plain[:0], int(g.n))[:g.n]
		if _, err := s.f.ReadAt(plain, g.off); err != nil {
			return objs, fmt.Errorf("index spill in %s: %w", s.f.Name(), err)
		}
		if sum := blake3.Sum256(plain); !bytes.Equal(sum[:], g.sum[:]) {
			return objs, fmt.Errorf("index spill in %s: %d bytes at %d read back changed: %w", s.f.Name(), g.n, g.off, ErrCorrupt)
		}
		name, err := r.writeIndexPlain(ctx, plain)
		if err != nil {
			return objs, err
		}
		objs = append(objs, IndexObject{Name: name, Packs: g.packs})
	}
	rest, err := r.WriteIndexes(ctx, s.pending)
	return append(objs, rest...), err
}

func (s *indexSpill) close() {
	if s.f != nil {
		s.f.Close()
	}
}
