package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/chunk"
)

// SnapshotID names a snapshot object; it is random.
type SnapshotID string

// Snapshot is one backup of one path on one node.
type Snapshot struct {
	ID       SnapshotID `json:"-"`
	Time     time.Time  `json:"time"` // when the backup started
	EndTime  time.Time  `json:"end_time"`
	Node     string     `json:"node"`
	Path     string     `json:"path"`
	Tree     chunk.ID   `json:"tree"`
	Parent   SnapshotID `json:"parent,omitempty"`
	Username string     `json:"username,omitempty"`
	Tags     []string   `json:"tags,omitempty"`
	Source   string     `json:"source,omitempty"` // "dir" or "tar"
	Summary  Summary    `json:"summary"`
}

// Summary is what a backup did, kept with its snapshot.
type Summary struct {
	FilesNew       uint64  `json:"files_new"`
	FilesChanged   uint64  `json:"files_changed"`
	FilesUnchanged uint64  `json:"files_unchanged"`
	Dirs           uint64  `json:"dirs"`
	Errors         uint64  `json:"errors"`
	BytesRead      uint64  `json:"bytes_read"`   // file contents read and chunked
	TotalSize      uint64  `json:"total_size"`   // logical size of all files
	BytesAdded     uint64  `json:"bytes_added"`  // plaintext of new blobs
	StoredAdded    uint64  `json:"stored_added"` // bytes of new packs
	ChunksNew      uint64  `json:"chunks_new"`
	ChunksReused   uint64  `json:"chunks_reused"`
	TreesNew       uint64  `json:"trees_new"`
	Packs          uint64  `json:"packs"`
	DurationSec    float64 `json:"duration_sec"`
}

// maxSnapshotSize caps a snapshot object a reader will open.
const maxSnapshotSize = 1 << 20

func snapshotName(id SnapshotID) string { return "snapshots/" + string(id) }

// NewSnapshotID draws a random snapshot ID.
func NewSnapshotID() SnapshotID {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return SnapshotID(hex.EncodeToString(b[:]))
}

// Short returns the first 8 hex digits.
func (id SnapshotID) Short() string {
	if len(id) > 8 {
		return string(id[:8])
	}
	return string(id)
}

func validSnapshotID(id SnapshotID) bool {
	if len(id) != 64 {
		return false
	}
	_, err := hex.DecodeString(string(id))
	return err == nil
}

// EncodeSnapshot seals a snapshot; exported for fuzzing the decoder.
func (r *Repository) encodeSnapshot(sn *Snapshot) ([]byte, error) {
	plain, err := json.Marshal(sn)
	if err != nil {
		return nil, err
	}
	return r.sealer.seal(nil, plain, []byte(snapshotName(sn.ID))), nil
}

// DecodeSnapshot decodes a snapshot's plaintext JSON and validates it.
func DecodeSnapshot(id SnapshotID, plain []byte) (*Snapshot, error) {
	if len(plain) > maxSnapshotSize {
		return nil, fmt.Errorf("snapshot %s of %d bytes: %w", id.Short(), len(plain), ErrCorrupt)
	}
	var sn Snapshot
	if err := json.Unmarshal(plain, &sn); err != nil {
		return nil, fmt.Errorf("snapshot %s: %v: %w", id.Short(), err, ErrCorrupt)
	}
	if sn.Node == "" || sn.Path == "" || sn.Tree.IsZero() || sn.Time.IsZero() {
		return nil, fmt.Errorf("snapshot %s lacks node, path, tree or time: %w", id.Short(), ErrCorrupt)
	}
	sn.ID = id
	return &sn, nil
}

// SaveSnapshot writes sn, assigning it a new ID. Call it only after every
// pack and index object the snapshot needs is durable: the write is the
// commit.
func (r *Repository) SaveSnapshot(ctx context.Context, sn *Snapshot) error {
	sn.ID = NewSnapshotID()
	data, err := r.encodeSnapshot(sn)
	if err != nil {
		return err
	}
	if err := r.store.Put(ctx, snapshotName(sn.ID), data); err != nil {
		return fmt.Errorf("commit snapshot %s: %w", sn.ID.Short(), err)
	}
	return nil
}

// LoadSnapshot reads and verifies one snapshot object.
func (r *Repository) LoadSnapshot(ctx context.Context, id SnapshotID) (*Snapshot, error) {
	if !validSnapshotID(id) {
		return nil, fmt.Errorf("snapshot ID %q: %w", id, ErrNotFound)
	}
	name := snapshotName(id)
	sealed, err := r.store.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	plain, err := r.sealer.open(nil, sealed, []byte(name))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return DecodeSnapshot(id, plain)
}

// ListSnapshotIDs lists the snapshot objects in the store.
func (r *Repository) ListSnapshotIDs(ctx context.Context) ([]SnapshotID, error) {
	var ids []SnapshotID
	err := r.store.List(ctx, "snapshots/", func(oi ObjectInfo) error {
		id := SnapshotID(strings.TrimPrefix(oi.Name, "snapshots/"))
		if validSnapshotID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// DeleteSnapshot removes a snapshot object (forget).
func (r *Repository) DeleteSnapshot(ctx context.Context, id SnapshotID) error {
	return r.store.Delete(ctx, snapshotName(id))
}
