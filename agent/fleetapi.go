package agent

import (
	"time"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// The wire types of fleet mode. Agents call the coordinator's session API;
// the coordinator calls the agent's backup and restore API.

// OpenSessionRequest opens a backup session for one node and path.
type OpenSessionRequest struct {
	Node string `json:"node"`
	Path string `json:"path"`
}

// SessionInfo is an open session.
type SessionInfo struct {
	ID       string         `json:"id"`
	Lease    time.Duration  `json:"lease"`
	RepoID   string         `json:"repo_id"`
	ParentID string         `json:"parent_id,omitempty"`
	Parent   *repo.Snapshot `json:"parent,omitempty"`
}

// BlobRef names a blob.
type BlobRef struct {
	Type repo.BlobType `json:"t"`
	ID   chunk.ID      `json:"id"`
}

// LookupRequest asks which blobs the repository holds.
type LookupRequest struct {
	Blobs []BlobRef `json:"blobs"`
}

// BlobLocation is where a stored blob is.
type BlobLocation struct {
	Pack   repo.PackID `json:"pack"`
	Offset uint32      `json:"off"`
	Length uint32      `json:"len"`
	Raw    uint32      `json:"raw"`
}

// LookupResponse answers a LookupRequest in order; nil means unseen (new,
// or condemned by a running garbage collection).
type LookupResponse struct {
	Found []*BlobLocation `json:"found"`
}

// MaxLookupBatch bounds one lookup request.
const MaxLookupBatch = 4096

// RegisterPacksRequest tells the coordinator about packs the session
// uploaded; they are roots of garbage collection until the session ends.
type RegisterPacksRequest struct {
	Packs []repo.PackInfo `json:"packs"`
}

// CommitRequest commits a snapshot; the coordinator writes it.
type CommitRequest struct {
	Snapshot repo.Snapshot `json:"snapshot"`
}

// CommitResponse carries the new snapshot's ID.
type CommitResponse struct {
	ID string `json:"id"`
}

// BackupRequest asks an agent to back up one of its paths now.
type BackupRequest struct {
	Path string `json:"path"`
}

// BackupResponse reports a finished backup.
type BackupResponse struct {
	ID      string       `json:"id"`
	Summary repo.Summary `json:"summary"`
}

// RestoreRequest asks an agent to restore a snapshot in place.
type RestoreRequest struct {
	Snapshot string `json:"snapshot"` // full ID
	Sub      string `json:"sub,omitempty"`
	Target   string `json:"target"`
}

// RestoreResponse reports a finished restore.
type RestoreResponse struct {
	Stats RestoreStats `json:"stats"`
}

// HealthResponse is an agent's answer to a health probe.
type HealthResponse struct {
	Node    string   `json:"node"`
	Paths   []string `json:"running,omitempty"`
	Version string   `json:"version"`
}
