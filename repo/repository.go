package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/chunk"
)

// Config is the encrypted repository configuration, fixed at init.
type Config struct {
	Version  int          `json:"version"`
	ID       string       `json:"id"`
	Created  time.Time    `json:"created"`
	Chunker  chunk.Params `json:"chunker"`
	PackSize int          `json:"pack_size"`
	// Keep is the default number of snapshots kept per node and path.
	Keep int `json:"keep"`
}

const (
	configName    = "config"
	formatVersion = 1
	// DefaultPackSize: 16 MiB packs keep request counts low on S3 (a
	// 10 GiB backup is ~640 PUTs) while a pack in flight per uploader
	// still fits comfortably in memory.
	DefaultPackSize = 16 << 20
	// DefaultKeep is how many snapshots of each node and path are kept.
	DefaultKeep = 10
)

// InitOptions tune a new repository.
type InitOptions struct {
	KDF      KDFParams     // zero: DefaultKDF
	PackSize int           // zero: DefaultPackSize
	Chunker  *chunk.Params // nil: random polynomial, default sizes
	Keep     int           // zero: DefaultKeep
}

// Repository is an open repository: a store and the keys to read it.
type Repository struct {
	store   Store
	cfg     Config
	mk      masterKey
	keyName string
	sealer  *sealer
	hasher  *chunk.Hasher
	trees   *treePacks
}

// Init creates a repository in st. It refuses if st already holds one.
func Init(ctx context.Context, st Store, password string, opts InitOptions) (*Repository, error) {
	if password == "" {
		return nil, errors.New("an empty password is not allowed")
	}
	if _, err := st.Stat(ctx, configName); err == nil {
		return nil, fmt.Errorf("%s: %w", Location(st), ErrRepositoryExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if opts.KDF == (KDFParams{}) {
		opts.KDF = DefaultKDF
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.PackSize < 1<<16 || opts.PackSize > 512<<20 {
		return nil, fmt.Errorf("pack size %d out of range 64 KiB..512 MiB", opts.PackSize)
	}
	if opts.Keep == 0 {
		opts.Keep = DefaultKeep
	}
	params := opts.Chunker
	if params == nil {
		p, err := chunk.NewParams()
		if err != nil {
			return nil, err
		}
		params = &p
	}
	if err := params.Validate(); err != nil {
		return nil, err
	}
	mk := masterKey{Encrypt: make([]byte, 32)}
	if _, err := rand.Read(mk.Encrypt); err != nil {
		return nil, err
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return nil, err
	}
	cfg := Config{
		Version: formatVersion, ID: hex.EncodeToString(idb), Created: time.Now().UTC(),
		Chunker: *params, PackSize: opts.PackSize, Keep: opts.Keep,
	}
	r, err := newRepository(st, cfg, mk)
	if err != nil {
		return nil, err
	}
	keyName, keyData, err := newKeyObject(password, mk, opts.KDF)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	// Key first, config last: a repository is there when its config is.
	if err := st.Put(ctx, keyName, keyData); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := st.Put(ctx, configName, r.sealer.seal(nil, plain, []byte(configName))); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	r.keyName = keyName
	return r, nil
}

func newRepository(st Store, cfg Config, mk masterKey) (*Repository, error) {
	s, err := newSealer(mk.Encrypt)
	if err != nil {
		return nil, err
	}
	h, err := chunk.NewHasher(cfg.Chunker.IDKey)
	if err != nil {
		return nil, err
	}
	return &Repository{store: st, cfg: cfg, mk: mk, sealer: s, hasher: h, trees: newTreePacks()}, nil
}

// Open opens the repository in st with password.
func Open(ctx context.Context, st Store, password string) (*Repository, error) {
	if _, err := st.Stat(ctx, configName); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", Location(st), ErrNoRepository)
		}
		return nil, err
	}
	mk, keyName, err := findKey(ctx, st, password)
	if err != nil {
		if errors.Is(err, ErrNoRepository) {
			return nil, fmt.Errorf("%s has a config but no key: %w", Location(st), ErrNoRepository)
		}
		return nil, err
	}
	sealed, err := st.Get(ctx, configName, 0, -1)
	if err != nil {
		return nil, err
	}
	s, err := newSealer(mk.Encrypt)
	if err != nil {
		return nil, err
	}
	plain, err := s.open(nil, sealed, []byte(configName))
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", Location(st), err)
	}
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("config of %s: %v: %w", Location(st), err, ErrCorrupt)
	}
	if cfg.Version != formatVersion {
		return nil, fmt.Errorf("repository format %d, this cairn reads %d", cfg.Version, formatVersion)
	}
	if err := cfg.Chunker.Validate(); err != nil {
		return nil, fmt.Errorf("config of %s: %v: %w", Location(st), err, ErrCorrupt)
	}
	r, err := newRepository(st, cfg, mk)
	if err != nil {
		return nil, err
	}
	r.keyName = keyName
	return r, nil
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Store returns the underlying store.
func (r *Repository) Store() Store { return r.store }

// Hasher returns the chunk ID hasher.
func (r *Repository) Hasher() *chunk.Hasher { return r.hasher }

// Location is where the repository lives, for messages.
func (r *Repository) Location() string { return Location(r.store) }

// ReadBlob reads, verifies and returns one blob.
func (r *Repository) ReadBlob(ctx context.Context, pack PackID, e BlobEntry) ([]byte, error) {
	sealed, err := r.store.Get(ctx, pack.ObjectName(), int64(e.Offset), int64(e.Length))
	if err != nil {
		return nil, fmt.Errorf("read %s blob %s from pack %s: %w", e.Type, e.ID.Short(), pack, err)
	}
	plain, err := r.openBlob(e.Type, e.ID, sealed, int(e.RawLength))
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", pack, err)
	}
	return plain, nil
}

// ReadBlobs reads blobs of one pack with a single range request spanning
// them (entries sorted by offset, none twice) and calls fn with each
// verified plaintext, which is only valid during the call: buffers are
// reused. A verification failure stops and names the pack.
func (r *Repository) ReadBlobs(ctx context.Context, pack PackID, entries []BlobEntry, fn func(BlobEntry, []byte) error) error {
	if len(entries) == 0 {
		return nil
	}
	start := int64(entries[0].Offset)
	last := entries[len(entries)-1]
	end := int64(last.Offset) + int64(last.Length)
	if rr, ok := r.store.(RangeReader); ok {
		return r.streamBlobs(ctx, rr, pack, entries, start, end, fn)
	}
	buf, err := r.store.Get(ctx, pack.ObjectName(), start, end-start)
	if err != nil {
		return fmt.Errorf("read pack %s: %w", pack, err)
	}
	var scratch []byte
	prevEnd := int64(-1)
	for _, e := range entries {
		off := int64(e.Offset) - start
		if off < prevEnd || off+int64(e.Length) > int64(len(buf)) {
			return fmt.Errorf("pack %s: blob entries not sorted by offset or overlapping", pack)
		}
		prevEnd = off + int64(e.Length)
		// The range is ours (Get returns a fresh buffer), so blobs are
		// opened in place.
		plain, err := r.openBlobInPlace(e.Type, e.ID, buf[off:prevEnd], int(e.RawLength), &scratch)
		if err != nil {
			return fmt.Errorf("pack %s: %w", pack, err)
		}
		if err := fn(e, plain); err != nil {
			return err
		}
	}
	return nil
}

// streamBlobs is ReadBlobs over a stream of the range: one blob is held at
// a time, and opening blobs overlaps the transfer of the next.
func (r *Repository) streamBlobs(ctx context.Context, rr RangeReader, pack PackID, entries []BlobEntry, start, end int64, fn func(BlobEntry, []byte) error) error {
	rc, err := rr.GetReader(ctx, pack.ObjectName(), start, end-start)
	if err != nil {
		return fmt.Errorf("read pack %s: %w", pack, err)
	}
	defer rc.Close()
	var sealed, scratch []byte
	pos := start
	for _, e := range entries {
		off := int64(e.Offset)
		if off < pos {
			return fmt.Errorf("pack %s: blob entries not sorted by offset or overlapping", pack)
		}
		if gap := off - pos; gap > 0 {
			if _, err := io.CopyN(io.Discard, rc, gap); err != nil {
				return readErr(pack, off, err)
			}
		}
		if cap(sealed) < int(e.Length) {
			sealed = make([]byte, e.Length)
		}
		sealed = sealed[:e.Length]
		if _, err := io.ReadFull(rc, sealed); err != nil {
			return readErr(pack, off, err)
		}
		pos = off + int64(e.Length)
		plain, err := r.openBlobInPlace(e.Type, e.ID, sealed, int(e.RawLength), &scratch)
		if err != nil {
			return fmt.Errorf("pack %s: %w", pack, err)
		}
		if err := fn(e, plain); err != nil {
			return err
		}
	}
	return nil
}

func readErr(pack PackID, off int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read pack %s: ends before offset %d its index names: %w", pack, off, ErrCorrupt)
	}
	return fmt.Errorf("read pack %s: %w", pack, err)
}

// ReadPackHeader reads a pack's own table of contents: used to rebuild the
// index from packs alone and by check.
func (r *Repository) ReadPackHeader(ctx context.Context, id PackID, size int64) ([]BlobEntry, error) {
	name := id.ObjectName()
	if size < trailerSize+Overhead {
		return nil, fmt.Errorf("pack %s of %d bytes: %w", id, size, ErrCorrupt)
	}
	// Most headers are small: read a tail that probably holds it all.
	tail := min(size, int64(64<<10))
	buf, err := r.store.Get(ctx, name, size-tail, tail)
	if err != nil {
		return nil, fmt.Errorf("read pack %s header: %w", id, err)
	}
	hlen, err := parsePackTrailer(buf[len(buf)-trailerSize:], size)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	if hlen+trailerSize > tail {
		buf, err = r.store.Get(ctx, name, size-hlen-trailerSize, hlen+trailerSize)
		if err != nil {
			return nil, fmt.Errorf("read pack %s header: %w", id, err)
		}
	}
	sealed := buf[len(buf)-trailerSize-int(hlen) : len(buf)-trailerSize]
	plain, err := r.sealer.open(nil, sealed, []byte(packHeaderAD))
	if err != nil {
		return nil, fmt.Errorf("pack %s header: %w", id, err)
	}
	blobs, err := DecodePackHeader(plain, size-hlen-trailerSize)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", id, err)
	}
	return blobs, nil
}

// ListPacks lists the pack objects in the store with their sizes.
func (r *Repository) ListPacks(ctx context.Context, fn func(PackID, int64) error) error {
	return r.store.List(ctx, "data/", func(oi ObjectInfo) error {
		i := strings.LastIndex(oi.Name, "/")
		id, err := ParsePackID(oi.Name[i+1:])
		if err != nil {
			return nil // not ours
		}
		return fn(id, oi.Size)
	})
}

// ReadPack reads a whole pack and checks that it hashes to its name.
func (r *Repository) ReadPack(ctx context.Context, id PackID) ([]byte, error) {
	buf, err := r.store.Get(ctx, id.ObjectName(), 0, -1)
	if err != nil {
		return nil, err
	}
	if PackID(blake3sum(buf)) != id {
		return nil, fmt.Errorf("pack %s: content does not match its name: %w", id, ErrCorrupt)
	}
	return buf, nil
}

// LoadTree reads, verifies and decodes a tree blob.
func (r *Repository) LoadTree(ctx context.Context, pack PackID, e BlobEntry) (*Tree, error) {
	var plain []byte
	var err error
	if sealed := r.cachedTree(ctx, pack, e); sealed != nil {
		if plain, err = r.openBlob(e.Type, e.ID, sealed, int(e.RawLength)); err != nil {
			// Whatever broke the cached copy, the store's is the one
			// to judge by.
			r.trees.drop(pack)
			plain = nil
		}
	}
	if plain == nil {
		if plain, err = r.ReadBlob(ctx, pack, e); err != nil {
			return nil, err
		}
	}
	t, err := DecodeTree(plain)
	if err != nil {
		return nil, fmt.Errorf("tree %s in pack %s: %w", e.ID.Short(), pack, err)
	}
	return t, nil
}

// OpenBlob verifies and decodes a sealed blob already in memory.
func (r *Repository) OpenBlob(e BlobEntry, sealed []byte) ([]byte, error) {
	return r.openBlob(e.Type, e.ID, sealed, int(e.RawLength))
}
