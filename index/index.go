package index

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// ErrLocked: another process holds the index open.
var ErrLocked = errors.New("index is in use by another cairn process")

// Key prefixes. One byte each keeps keys short: the blob table dominates.
const (
	pBlob     = 'b' // b type id → pack ref, offset, length, raw length (uvarints)
	pPack     = 'p' // p pack id → size, blob count, pack ref
	pRef      = 'r' // r pack ref → pack id
	pIndexObj = 'x' // x name → ids of the packs it describes (empty when written by an older cairn)
	pSnapshot = 's' // s id → snapshot JSON
	pMeta     = 'm' // m key → value
)

// Location is where a blob is stored.
type Location struct {
	Pack  repo.PackID
	Entry repo.BlobEntry
}

// Index is an open Badger index. It is safe for concurrent use.
type Index struct {
	db        *badger.DB
	dir       string
	recovered error
	instance  string

	// While Sync reloads, packs added by others are remembered so the
	// reload does not delete them as stale.
	mu        sync.Mutex
	reloading int
	recent    map[repo.PackID]bool

	// Blob entries name their pack by a small number, its ref, instead
	// of its 32-byte ID: a blob entry is then about 60 bytes on disk, not
	// 93, and a million-file backup writes a third less index through
	// memory-mapped tables (which count in its RSS). Refs are never
	// reused: nextRef only grows and is stored with every new ref.
	refMu   sync.RWMutex
	nextRef uint64
	refOf   map[repo.PackID]uint64 // refs this process has seen
	packOf  map[uint64]repo.PackID
}

// indexFormat is the layout of the entries. An index of another layout
// (an older cairn's) is emptied at Open and refilled from the bucket.
const indexFormat = "2"

// Open opens (creating if needed) the index in dir for the repository with
// the given ID. An index that belongs to another repository is an error.
//
// The index is a cache of the repository, so an index Badger cannot open
// (a crash at the wrong moment) is moved aside to dir+".damaged" and a
// fresh one is opened, for the caller's Sync to fill from the bucket;
// Recovered then says why.
func Open(dir, repoID string) (*Index, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index folder %s: %w", dir, err)
	}
	if err := removeEmptyMemtables(dir); err != nil {
		return nil, err
	}
	db, err := openBadger(dir)
	var recovered error
	if err != nil && !errors.Is(err, ErrLocked) {
		recovered = err
		aside := dir + ".damaged"
		if err := os.RemoveAll(aside); err != nil {
			return nil, fmt.Errorf("%w; and removing an older %s: %w", recovered, aside, err)
		}
		if err := os.Rename(dir, aside); err != nil {
			return nil, fmt.Errorf("%w; and moving it aside: %w", recovered, err)
		}
		db, err = openBadger(dir)
	}
	if err != nil {
		return nil, err
	}
	ix := &Index{db: db, dir: dir, recovered: recovered, refOf: map[repo.PackID]uint64{}, packOf: map[uint64]repo.PackID{}}
	if err := ix.openFormat(); err != nil {
		db.Close()
		return nil, err
	}
	owner, err := ix.meta("repo")
	if err != nil {
		db.Close()
		return nil, err
	}
	switch owner {
	case "":
		if err := ix.setMeta("repo", repoID); err != nil {
			db.Close()
			return nil, err
		}
	case repoID:
	default:
		db.Close()
		return nil, fmt.Errorf("index %s belongs to repository %s, not %s", dir, owner, repoID)
	}
	if ix.instance, err = ix.loadInstance(); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

// loadInstance returns the index's random name, made at its first open.
func (ix *Index) loadInstance() (string, error) {
	id, err := ix.meta("instance")
	if err != nil || id != "" {
		return id, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id = hex.EncodeToString(b[:])
	return id, ix.setMeta("instance", id)
}

func openBadger(dir string) (*badger.DB, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithNumVersionsToKeep(1).
		// Entries are ~60 bytes; small tables and caches keep a cairn
		// process lean. The blob table of 1 TiB of unique data is ~1M keys.
		// Memtables of 4 MiB, not 8: a 1M-file initial backup peaked at
		// 202-208 MB instead of 221-233 (the two memtable arenas are on
		// the heap). Badger wants values above the threshold to fit a
		// write batch, which shrinks with the memtable; cairn's values
		// are tens of bytes, and a rare large one goes to the value log.
		WithMemTableSize(4 << 20).
		WithValueThreshold(64 << 10).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumMemtables(2).
		// Level 0 takes a backup's new entries (a million files fill about
		// fifteen tables) without compacting them into level 1 during the
		// run: every such compaction rewrote the whole blob table through
		// memory-mapped files that count in the process's RSS (1M-file
		// initial backup: 408 MB peak, 30.5 s with 5 tables; 315 MB,
		// 26.1 s with 20). Close compacts level 0 (below), so the next
		// run does not inherit the work.
		WithNumLevelZeroTables(20).
		WithNumLevelZeroTablesStall(40).
		WithValueLogFileSize(64 << 20).
		WithCompression(options.None).
		WithNumCompactors(2).
		// The blob table of a few million files fits one level, and a run
		// compacts what it wrote before it exits: otherwise an ordinary
		// no-change backup of a million files now and then inherited a
		// compaction of everything (9.2 s and 337 MB instead of 2.4 s
		// and 91 MB; measured over runs of /tmp/t1m).
		WithBaseLevelSize(256 << 20).
		WithCompactL0OnClose(true)
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return db, nil
}

// removeEmptyMemtables deletes zero-length memtable files. A process killed
// between creating one and sizing it leaves such a file, and Badger then
// refuses to open (dgraph-io/badger#2207); an empty file holds no data.
func removeEmptyMemtables(dir string) error {
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return err
	}
	for _, m := range mems {
		if fi, err := os.Stat(m); err == nil && fi.Size() == 0 {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("index: remove empty memtable: %w", err)
			}
		}
	}
	return nil
}

// Recovered returns why the index was found damaged and started afresh at
// Open, or nil.
func (ix *Index) Recovered() error { return ix.recovered }

// Instance returns a random name of this index, kept for its life. Badger
// lets one process at a time open it, so the name also stands for that
// process: repository locks carry it.
func (ix *Index) Instance() string { return ix.instance }

// Dir returns the index folder.
func (ix *Index) Dir() string { return ix.dir }

// Close closes the index.
func (ix *Index) Close() error { return ix.db.Close() }

// Flush makes every write so far durable. Badger does not sync writes by
// default; call Flush before acknowledging a commit.
func (ix *Index) Flush() error { return ix.db.Sync() }

func (ix *Index) meta(key string) (string, error) {
	var v string
	err := ix.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(append([]byte{pMeta}, key...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := it.ValueCopy(nil)
		v = string(b)
		return err
	})
	return v, err
}

func (ix *Index) setMeta(key, val string) error {
	return ix.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{pMeta}, key...), []byte(val))
	})
}

// openFormat empties an index of another layout (the caller's Sync
// refills it) and loads the next pack ref.
func (ix *Index) openFormat() error {
	f, err := ix.meta("format")
	if err != nil {
		return err
	}
	if f != indexFormat {
		// A new index (no owner yet) has nothing to clear.
		if owner, err := ix.meta("repo"); err != nil {
			return err
		} else if owner != "" {
			if err := ix.dropPrefix(pBlob, pPack, pRef, pIndexObj, pSnapshot); err != nil {
				return fmt.Errorf("index %s: clear entries of format %q: %w", ix.dir, f, err)
			}
		}
		if err := ix.setMeta("format", indexFormat); err != nil {
			return err
		}
	}
	next, err := ix.meta("next-ref")
	if err != nil || next == "" {
		return err
	}
	ix.nextRef, err = strconv.ParseUint(next, 10, 64)
	if err != nil {
		return fmt.Errorf("index %s: next pack ref %q: %w", ix.dir, next, repo.ErrCorrupt)
	}
	return nil
}

func refKey(ref uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pRef}, ref)
}

// refsFor returns the ref of every pack, giving the next refs to packs
// the index does not hold, and stores the pack and ref entries before it
// returns: a blob entry is written only once its ref resolves.
func (ix *Index) refsFor(packs []repo.PackInfo) ([]uint64, error) {
	ix.refMu.Lock()
	defer ix.refMu.Unlock()
	refs := make([]uint64, 0, len(packs))
	// A transaction of a few thousand entries stays far below Badger's
	// limit; an index object may list tens of thousands of packs.
	for start := 0; start < len(packs); start += 1024 {
		group := packs[start:min(start+1024, len(packs))]
		got, err := ix.refsForLocked(group)
		if err != nil {
			return nil, err
		}
		refs = append(refs, got...)
	}
	return refs, nil
}

func (ix *Index) refsForLocked(packs []repo.PackInfo) ([]uint64, error) {
	refs := make([]uint64, len(packs))
	next := ix.nextRef
	err := ix.db.Update(func(txn *badger.Txn) error {
		for i, p := range packs {
			ref, ok := ix.refOf[p.ID]
			if !ok {
				item, err := txn.Get(append([]byte{pPack}, p.ID[:]...))
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
				case err != nil:
					return err
				default:
					if err := item.Value(func(v []byte) error {
						if len(v) == 24 {
							ref, ok = binary.LittleEndian.Uint64(v[16:]), true
						}
						return nil
					}); err != nil {
						return err
					}
				}
			}
			if !ok {
				next++
				ref = next
			}
			refs[i] = ref
			pv := make([]byte, 24)
			binary.LittleEndian.PutUint64(pv, uint64(p.Size))
			binary.LittleEndian.PutUint64(pv[8:], uint64(len(p.Blobs)))
			binary.LittleEndian.PutUint64(pv[16:], ref)
			if err := txn.Set(append([]byte{pPack}, p.ID[:]...), pv); err != nil {
				return err
			}
			if err := txn.Set(refKey(ref), p.ID[:]); err != nil {
				return err
			}
		}
		if next != ix.nextRef {
			return txn.Set(append([]byte{pMeta}, "next-ref"...), []byte(strconv.FormatUint(next, 10)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ix.nextRef = next
	for i, p := range packs {
		ix.refOf[p.ID], ix.packOf[refs[i]] = refs[i], p.ID
	}
	return refs, nil
}

// packOfRef resolves a pack ref read in txn.
func (ix *Index) packOfRef(txn *badger.Txn, ref uint64) (repo.PackID, error) {
	ix.refMu.RLock()
	id, ok := ix.packOf[ref]
	ix.refMu.RUnlock()
	if ok {
		return id, nil
	}
	item, err := txn.Get(refKey(ref))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return id, fmt.Errorf("local index %s names pack ref %d, which it lacks (run `cairn index rebuild`): %w", ix.dir, ref, repo.ErrCorrupt)
	}
	if err != nil {
		return id, err
	}
	if err := item.Value(func(v []byte) error {
		if len(v) != len(id) {
			return fmt.Errorf("pack ref %d: %d bytes: %w", ref, len(v), repo.ErrCorrupt)
		}
		copy(id[:], v)
		return nil
	}); err != nil {
		return id, err
	}
	ix.refMu.Lock()
	ix.refOf[id], ix.packOf[ref] = ref, id
	ix.refMu.Unlock()
	return id, nil
}

func blobKey(t repo.BlobType, id chunk.ID) []byte {
	k := make([]byte, 2+chunk.IDSize)
	k[0], k[1] = pBlob, byte(t)
	copy(k[2:], id[:])
	return k
}

func encodeLoc(ref uint64, e repo.BlobEntry) []byte {
	v := make([]byte, 0, 4*binary.MaxVarintLen32)
	v = binary.AppendUvarint(v, ref)
	v = binary.AppendUvarint(v, uint64(e.Offset))
	v = binary.AppendUvarint(v, uint64(e.Length))
	return binary.AppendUvarint(v, uint64(e.RawLength))
}

// decodeLoc decodes a blob entry read in txn.
func (ix *Index) decodeLoc(txn *badger.Txn, t repo.BlobType, id chunk.ID, v []byte) (Location, error) {
	var f [4]uint64
	for i := range f {
		n := 0
		f[i], n = binary.Uvarint(v)
		if n <= 0 || (i > 0 && f[i] > math.MaxUint32) {
			return Location{}, fmt.Errorf("index entry for %s: %w", id.Short(), repo.ErrCorrupt)
		}
		v = v[n:]
	}
	if len(v) != 0 {
		return Location{}, fmt.Errorf("index entry for %s: %d trailing bytes: %w", id.Short(), len(v), repo.ErrCorrupt)
	}
	pack, err := ix.packOfRef(txn, f[0])
	if err != nil {
		return Location{}, fmt.Errorf("index entry for %s: %w", id.Short(), err)
	}
	return Location{Pack: pack, Entry: repo.BlobEntry{
		Type: t, ID: id, Offset: uint32(f[1]), Length: uint32(f[2]), RawLength: uint32(f[3]),
	}}, nil
}

// Lookup returns where blob id of type t is stored.
func (ix *Index) Lookup(t repo.BlobType, id chunk.ID) (Location, bool, error) {
	var loc Location
	found := false
	err := ix.db.View(func(txn *badger.Txn) error {
		var err error
		loc, found, err = ix.lookupIn(txn, t, id)
		return err
	})
	return loc, found, err
}

// LookupMany looks up every id in one read transaction and calls fn with
// each one's index in ids and location, or found false. A transaction per
// lookup cost a restore's plan of go1.24.0 (11,600 chunks) a third of its
// index time.
func (ix *Index) LookupMany(t repo.BlobType, ids []chunk.ID, fn func(i int, loc Location, found bool) error) error {
	return ix.db.View(func(txn *badger.Txn) error {
		for i, id := range ids {
			loc, found, err := ix.lookupIn(txn, t, id)
			if err != nil {
				return err
			}
			if err := fn(i, loc, found); err != nil {
				return err
			}
		}
		return nil
	})
}

// lookupIn is a lookup in txn.
func (ix *Index) lookupIn(txn *badger.Txn, t repo.BlobType, id chunk.ID) (Location, bool, error) {
	it, err := txn.Get(blobKey(t, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Location{}, false, nil
	}
	if err != nil {
		return Location{}, false, err
	}
	var loc Location
	err = it.Value(func(v []byte) error {
		var err error
		loc, err = ix.decodeLoc(txn, t, id, v)
		return err
	})
	return loc, err == nil, err
}

// Has reports whether blob id of type t is indexed.
func (ix *Index) Has(t repo.BlobType, id chunk.ID) (bool, error) {
	found := false
	err := ix.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(t, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// AddPacks records packs and their blobs.
func (ix *Index) AddPacks(packs []repo.PackInfo) error {
	ix.mu.Lock()
	if ix.reloading > 0 {
		for _, p := range packs {
			ix.recent[p.ID] = true
		}
	}
	ix.mu.Unlock()
	return ix.addPacks(packs)
}

func (ix *Index) addPacks(packs []repo.PackInfo) error {
	refs, err := ix.refsFor(packs)
	if err != nil {
		return err
	}
	wb := ix.db.NewWriteBatch()
	defer wb.Cancel()
	for i, p := range packs {
		for _, b := range p.Blobs {
			if err := wb.Set(blobKey(b.Type, b.ID), encodeLoc(refs[i], b)); err != nil {
				return err
			}
		}
	}
	return wb.Flush()
}

// PackStat is what the index knows about a pack.
type PackStat struct {
	ID    repo.PackID
	Size  int64
	Blobs int
}

// Packs lists the indexed packs.
func (ix *Index) Packs() ([]PackStat, error) {
	var out []PackStat
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pPack}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var ps PackStat
			copy(ps.ID[:], item.Key()[1:])
			if err := item.Value(func(v []byte) error {
				if len(v) != 24 {
					return fmt.Errorf("pack entry %s: %w", ps.ID.Short(), repo.ErrCorrupt)
				}
				ps.Size = int64(binary.LittleEndian.Uint64(v))
				ps.Blobs = int(binary.LittleEndian.Uint64(v[8:]))
				return nil
			}); err != nil {
				return err
			}
			out = append(out, ps)
		}
		return nil
	})
	return out, err
}

// EachBlob calls fn for every indexed blob.
func (ix *Index) EachBlob(fn func(Location) error) error {
	return ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pBlob}, PrefetchValues: true, PrefetchSize: 1000})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 2+chunk.IDSize {
				continue
			}
			var id chunk.ID
			copy(id[:], k[2:])
			var loc Location
			if err := it.Item().Value(func(v []byte) error {
				var err error
				loc, err = ix.decodeLoc(txn, repo.BlobType(k[1]), id, v)
				return err
			}); err != nil {
				return err
			}
			if err := fn(loc); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutSnapshot adds a snapshot to the catalog.
func (ix *Index) PutSnapshot(sn *repo.Snapshot) error {
	b, err := json.Marshal(sn)
	if err != nil {
		return err
	}
	return ix.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{pSnapshot}, sn.ID...), b)
	})
}

// DeleteSnapshot drops a snapshot from the catalog.
func (ix *Index) DeleteSnapshot(id repo.SnapshotID) error {
	return ix.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(append([]byte{pSnapshot}, id...))
	})
}

// Snapshots returns the catalog, newest first.
func (ix *Index) Snapshots() ([]*repo.Snapshot, error) {
	var out []*repo.Snapshot
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pSnapshot}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := repo.SnapshotID(it.Item().Key()[1:])
			if err := it.Item().Value(func(v []byte) error {
				var sn repo.Snapshot
				if err := json.Unmarshal(v, &sn); err != nil {
					return fmt.Errorf("catalog entry %s: %w", id.Short(), repo.ErrCorrupt)
				}
				sn.ID = id
				out = append(out, &sn)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	SortNewestFirst(out)
	return out, err
}

// SortNewestFirst orders snapshots by time, newest first, ties by ID.
func SortNewestFirst(sns []*repo.Snapshot) {
	sort.Slice(sns, func(i, j int) bool {
		if !sns[i].Time.Equal(sns[j].Time) {
			return sns[i].Time.After(sns[j].Time)
		}
		return sns[i].ID > sns[j].ID
	})
}

func (ix *Index) keysWithPrefix(prefix byte) (map[string]bool, error) {
	out := map[string]bool{}
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out[string(it.Item().Key()[1:])] = true
		}
		return nil
	})
	return out, err
}

func (ix *Index) dropPrefix(prefixes ...byte) error {
	ps := make([][]byte, len(prefixes))
	for i, p := range prefixes {
		ps[i] = []byte{p}
	}
	return ix.db.DropPrefix(ps...)
}

// DefaultDir is where the index of repository repoID lives:
// $CAIRN_STATE_DIR, else $XDG_STATE_HOME/cairn, else ~/.local/state/cairn.
func DefaultDir(repoID string) (string, error) {
	base := os.Getenv("CAIRN_STATE_DIR")
	if base == "" {
		if x := os.Getenv("XDG_STATE_HOME"); x != "" {
			base = filepath.Join(x, "cairn")
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no state folder: set CAIRN_STATE_DIR: %w", err)
			}
			base = filepath.Join(home, ".local", "state", "cairn")
		}
	}
	return DefaultDirIn(base, repoID), nil
}

// DefaultDirIn is where the index of repository repoID lives under base.
func DefaultDirIn(base, repoID string) string {
	return filepath.Join(base, repoID, "index")
}

// Meta returns a value recorded with SetMeta, or "".
func (ix *Index) Meta(key string) (string, error) { return ix.meta("u/" + key) }

// SetMeta records a small value in the index.
func (ix *Index) SetMeta(key, val string) error { return ix.setMeta("u/"+key, val) }
