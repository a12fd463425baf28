package repo

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors that callers branch on. Backends translate their own
// errors (fs.ErrNotExist, S3 error codes) onto these at the edge.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrCorrupt: an object exists but fails authentication, decoding or
	// its hash check.
	ErrCorrupt = errors.New("corrupt object")
	// ErrWrongPassword: no key object opens with the given password.
	ErrWrongPassword = errors.New("wrong password or no key for it")
	// ErrNoRepository: the location holds no cairn repository.
	ErrNoRepository = errors.New("no repository at this location")
	// ErrNoBucket: the S3 bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrRepositoryExists: init found a repository already there.
	ErrRepositoryExists = errors.New("a repository already exists at this location")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Store is where a repository keeps its objects: a flat namespace of names
// made of lower-case hex, letters and '/'.
//
// What cairn relies on, and every implementation must provide:
//   - Put is atomic: a reader sees the whole object or none of it, never a
//     prefix. A Put that returns nil is durable. Put on an existing name
//     replaces it (cairn only does so for names derived from content, so
//     the bytes are equal). Put does not keep data after it returns; the
//     caller reuses the buffer.
//   - Read-after-write: a Get or Stat after a successful Put sees it.
//   - Get of a missing object, Stat of a missing object and Delete of a
//     missing object return an error wrapping ErrNotFound.
//   - List may be incomplete (some S3 servers have returned short listings
//     marked complete): it is good for discovering objects, never alone for
//     deciding that an object is gone.
//   - Every method honours ctx cancellation.
//   - All methods are safe for concurrent use.
type Store interface {
	// Put stores data under name.
	Put(ctx context.Context, name string, data []byte) error
	// Get returns length bytes of the object from offset off; length < 0
	// means to the end. A range past the end is an error. The returned
	// buffer is the caller's: it may be written to.
	Get(ctx context.Context, name string, off, length int64) ([]byte, error)
	// Stat returns the object's size and time.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List calls fn for every object whose name starts with prefix, in no
	// particular order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object.
	Delete(ctx context.Context, name string) error
}

// Traits describe a store to the repository layer, which tunes itself by
// them. A store that does not implement TraitsProvider is taken as remote.
type Traits struct {
	// Local: reads cost no more than memory (a local disk, with the page
	// cache in front), so the repository caches nothing of it.
	Local bool
	// Uploaders is how many packs to upload at once by default; zero
	// means DefaultUploaders. A local disk writes a pack faster than one
	// is assembled, so a second uploader only holds another pack in
	// memory (measured: same speed, 30 MB more peak RSS).
	Uploaders int
}

// TraitsProvider is implemented by stores that describe themselves.
type TraitsProvider interface {
	Traits() Traits
}

// TraitsOf describes st; a store that does not describe itself is remote.
func TraitsOf(st Store) Traits {
	if tp, ok := st.(TraitsProvider); ok {
		return tp.Traits()
	}
	return Traits{}
}

// RangeReader is implemented by stores that can stream part of an object,
// so that a reader of many blobs holds one blob at a time instead of the
// whole range.
type RangeReader interface {
	// GetReader returns a reader of length (> 0) bytes of the object from
	// offset off. An object shorter than that reads short (io.EOF early);
	// a missing one fails with ErrNotFound, at the call or the first read.
	GetReader(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
}

// Locator is implemented by stores that can say where they are, for error
// messages ("s3://host/bucket", "/home/me/repo").
type Locator interface {
	Location() string
}

// Location returns a human-readable location of s.
func Location(s Store) string {
	if l, ok := s.(Locator); ok {
		return l.Location()
	}
	return "store"
}
