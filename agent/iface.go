package agent

import (
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// blobIndex is what the engine needs to know about stored blobs. The local
// Badger index provides it in embedded mode.
type blobIndex interface {
	Lookup(t repo.BlobType, id chunk.ID) (index.Location, bool, error)
	AddPacks(packs []repo.PackInfo) error
}

var _ blobIndex = (*index.Index)(nil)

// prefetcher is a blobIndex whose lookups are slow enough (a round trip)
// that the engine should ask for the trees it will read next ahead of time.
type prefetcher interface {
	Prefetch(trees []chunk.ID)
}

// indexObjectNoter is a blobIndex that keeps track of which index objects
// it has read, and what they describe.
type indexObjectNoter interface {
	NoteIndexObject(name string, packs []repo.PackID) error
}

var _ indexObjectNoter = (*index.Index)(nil)
