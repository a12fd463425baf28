package scheduler

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

type blobRef = agent.BlobRef

// session is one backup in progress. Sessions live in memory: every backup
// is run on the coordinator's request, so a coordinator that restarts has
// cut every running backup's request and no session could commit anyway.
type session struct {
	id       string
	node     string
	path     string
	parent   *repo.Snapshot
	expires  time.Time
	answered map[blobRef]struct{} // blobs it was told are stored
	packs    map[repo.PackID]repo.PackInfo
	uploaded map[blobRef]uploadedBlob // blobs of its registered packs
}

type uploadedBlob struct {
	pack  repo.PackID
	entry repo.BlobEntry
}

func newSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func newSession(node, path string, parent *repo.Snapshot, expires time.Time) *session {
	return &session{
		id: newSessionID(), node: node, path: path, parent: parent, expires: expires,
		answered: map[blobRef]struct{}{}, packs: map[repo.PackID]repo.PackInfo{}, uploaded: map[blobRef]uploadedBlob{},
	}
}

// allowed reports whether the session may reference the blob in a commit.
func (s *session) allowed(r blobRef) bool {
	if _, ok := s.answered[r]; ok {
		return true
	}
	_, ok := s.uploaded[r]
	return ok
}

// roots adds the session's garbage-collection roots to rs.
func (s *session) roots(rs *agent.Roots) {
	if s.parent != nil {
		rs.Trees = append(rs.Trees, s.parent.Tree)
	}
	for r := range s.answered {
		rs.Blobs = append(rs.Blobs, r)
	}
	for r := range s.uploaded {
		rs.Blobs = append(rs.Blobs, r)
	}
	for id := range s.packs {
		rs.Packs = append(rs.Packs, id)
	}
}

// register records packs the session uploaded.
func (s *session) register(packs []repo.PackInfo) {
	for _, p := range packs {
		s.packs[p.ID] = p
		for _, e := range p.Blobs {
			s.uploaded[blobRef{Type: e.Type, ID: e.ID}] = uploadedBlob{pack: p.ID, entry: e}
		}
	}
}

// location of a blob the session uploaded, for reading its new trees
// before they are indexed.
func (s *session) location(t repo.BlobType, id chunk.ID) (repo.PackID, repo.BlobEntry, bool) {
	u, ok := s.uploaded[blobRef{Type: t, ID: id}]
	return u.pack, u.entry, ok
}
