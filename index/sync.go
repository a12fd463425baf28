package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"

	"github.com/dgraph-io/badger/v4"

	"github.com/cairn-backup/cairn/repo"
)

// SyncStats says what a Sync or Rebuild found.
type SyncStats struct {
	IndexObjects   int // index objects read
	PacksFromIndex int
	PacksScanned   int // packs whose own table of contents was read
	Snapshots      int // snapshots in the catalog afterwards
	SnapshotsAdded int
	Reloaded       bool // blob locations were reloaded from scratch
	Problems       []error
}

// Sync brings the index up to date with the repository: it reads index and
// snapshot objects it has not seen and drops snapshots that are gone. When
// an index object it had read is gone (garbage collection rewrote the
// index), it reloads every blob location without ever emptying the index:
// all index objects are read over the existing entries, then entries no
// index object lists are deleted, except packs added meanwhile. Readers
// and writers go on throughout.
func (ix *Index) Sync(ctx context.Context, r *repo.Repository) (SyncStats, error) {
	var st SyncStats
	objs, err := r.ListIndexNames(ctx)
	if err != nil {
		return st, err
	}
	known, err := ix.keysWithPrefix(pIndexObj)
	if err != nil {
		return st, err
	}
	listed := map[string]bool{}
	for _, o := range objs {
		listed[o.Name] = true
	}
	for name := range known {
		if !listed[name] {
			st.Reloaded = true
			break
		}
	}
	if st.Reloaded {
		if err := ix.reload(ctx, r, objs, &st); err != nil {
			return st, err
		}
	} else {
		for _, o := range objs {
			if known[o.Name] {
				continue
			}
			if _, err := ix.loadIndexObject(ctx, r, o.Name, &st); err != nil {
				return st, err
			}
		}
	}
	if err := ix.syncSnapshots(ctx, r, &st); err != nil {
		return st, err
	}
	return st, ix.Flush()
}

func (ix *Index) reload(ctx context.Context, r *repo.Repository, objs []repo.ObjectInfo, st *SyncStats) error {
	ix.mu.Lock()
	if ix.reloading == 0 {
		ix.recent = map[repo.PackID]bool{}
	}
	ix.reloading++
	ix.mu.Unlock()
	defer func() {
		ix.mu.Lock()
		ix.reloading--
		ix.mu.Unlock()
	}()
	seenPacks := map[repo.PackID]bool{}
	seenBlobs := map[string]repo.PackID{}
	for _, o := range objs {
		packs, err := ix.loadIndexObject(ctx, r, o.Name, st)
		if err != nil {
			return err
		}
		for _, p := range packs {
			seenPacks[p.ID] = true
			for _, b := range p.Blobs {
				seenBlobs[string(blobKey(b.Type, b.ID))] = p.ID
			}
		}
	}
	// Delete what no index object lists: blob entries of dead blobs or
	// pointing at deleted packs, pack entries, forgotten index objects.
	ix.mu.Lock()
	recent := maps.Clone(ix.recent)
	ix.mu.Unlock()
	wb := ix.db.NewWriteBatch()
	defer wb.Cancel()
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlob}, PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if _, ok := seenBlobs[string(k)]; ok {
				continue
			}
			var pack repo.PackID
			if err := it.Item().Value(func(v []byte) error {
				// An entry that does not decode is deleted like a stale one.
				if ref, n := binary.Uvarint(v); n > 0 {
					pack, _ = ix.packOfRef(txn, ref)
				}
				return nil
			}); err != nil {
				return err
			}
			if recent[pack] {
				continue
			}
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		pit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pPack}})
		defer pit.Close()
		for pit.Rewind(); pit.Valid(); pit.Next() {
			k := pit.Item().KeyCopy(nil)
			var id repo.PackID
			copy(id[:], k[1:])
			if seenPacks[id] || recent[id] {
				continue
			}
			// Its ref entry stays (41 bytes): a blob entry written by a
			// concurrent AddPacks of the same pack may still name it.
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		listed := map[string]bool{}
		for _, o := range objs {
			listed[o.Name] = true
		}
		xit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pIndexObj}})
		defer xit.Close()
		for xit.Rewind(); xit.Valid(); xit.Next() {
			k := xit.Item().KeyCopy(nil)
			if !listed[string(k[1:])] {
				if err := wb.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}

// NoteIndexObject records that the index holds everything the index
// object name lists (its writer added the packs as it uploaded them), so
// Sync does not read it again, and which packs it describes.
func (ix *Index) NoteIndexObject(name string, packs []repo.PackID) error {
	out := make([]byte, 0, len(packs)*len(repo.PackID{}))
	for _, id := range packs {
		out = append(out, id[:]...)
	}
	return ix.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{pIndexObj}, name...), out)
	})
}

// IndexObjectPacks returns the packs the index object name describes, as
// recorded when it was read or noted. ok is false when that is not known
// (not read yet, or recorded by an older cairn): then the object itself
// must be read.
func (ix *Index) IndexObjectPacks(name string) (ids []repo.PackID, ok bool, err error) {
	err = ix.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{pIndexObj}, name...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			const n = len(repo.PackID{})
			if len(v) == 0 || len(v)%n != 0 {
				return nil
			}
			ids = make([]repo.PackID, len(v)/n)
			for i := range ids {
				copy(ids[i][:], v[i*n:])
			}
			ok = true
			return nil
		})
	})
	return ids, ok, err
}

func (ix *Index) loadIndexObject(ctx context.Context, r *repo.Repository, name string, st *SyncStats) ([]repo.PackInfo, error) {
	packs, err := r.ReadIndex(ctx, name)
	if err != nil {
		if errors.Is(err, repo.ErrNotFound) {
			return nil, nil // removed since the listing
		}
		return nil, err
	}
	if err := ix.addPacks(packs); err != nil {
		return nil, err
	}
	st.IndexObjects++
	st.PacksFromIndex += len(packs)
	return packs, ix.NoteIndexObject(name, repo.PackIDs(packs))
}

func (ix *Index) syncSnapshots(ctx context.Context, r *repo.Repository, st *SyncStats) error {
	ids, err := r.ListSnapshotIDs(ctx)
	if err != nil {
		return err
	}
	known, err := ix.keysWithPrefix(pSnapshot)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, id := range ids {
		listed[string(id)] = true
		if known[string(id)] {
			continue
		}
		sn, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, repo.ErrNotFound) {
			continue
		}
		if err != nil {
			// One unreadable snapshot must not hide the others.
			st.Problems = append(st.Problems, err)
			continue
		}
		if err := ix.PutSnapshot(sn); err != nil {
			return err
		}
		st.SnapshotsAdded++
	}
	for id := range known {
		if !listed[id] {
			// Listings can be short, so confirm before forgetting.
			if _, err := r.Store().Stat(ctx, "snapshots/"+id); !errors.Is(err, repo.ErrNotFound) {
				continue
			}
			if err := ix.DeleteSnapshot(repo.SnapshotID(id)); err != nil {
				return err
			}
		}
	}
	st.Snapshots = len(listed)
	return nil
}

// Rebuild discards the index and reconstructs it from the bucket alone:
// every index object, the table of contents of every pack no index object
// describes, and every snapshot object.
func (ix *Index) Rebuild(ctx context.Context, r *repo.Repository) (SyncStats, error) {
	var st SyncStats
	st.Reloaded = true
	if err := ix.dropPrefix(pBlob, pPack, pRef, pIndexObj, pSnapshot); err != nil {
		return st, err
	}
	ix.refMu.Lock()
	clear(ix.refOf)
	clear(ix.packOf)
	ix.refMu.Unlock()
	objs, err := r.ListIndexNames(ctx)
	if err != nil {
		return st, err
	}
	for _, o := range objs {
		if _, err := ix.loadIndexObject(ctx, r, o.Name, &st); err != nil {
			if !errors.Is(err, repo.ErrCorrupt) {
				return st, err
			}
			st.Problems = append(st.Problems, err)
		}
	}
	indexed, err := ix.keysWithPrefix(pPack)
	if err != nil {
		return st, err
	}
	err = r.ListPacks(ctx, func(id repo.PackID, size int64) error {
		if indexed[string(id[:])] {
			return nil
		}
		blobs, err := r.ReadPackHeader(ctx, id, size)
		if err != nil {
			st.Problems = append(st.Problems, fmt.Errorf("pack %s: %w", id, err))
			return nil
		}
		st.PacksScanned++
		return ix.AddPacks([]repo.PackInfo{{ID: id, Size: size, Blobs: blobs}})
	})
	if err != nil {
		return st, err
	}
	if err := ix.syncSnapshots(ctx, r, &st); err != nil {
		return st, err
	}
	return st, ix.Flush()
}
