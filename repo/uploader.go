package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/chunk"
)

// UploadOptions tune an upload session.
type UploadOptions struct {
	// Uploaders is the number of packs assembled and uploaded at once;
	// zero means DefaultUploaders. Pack memory is at most (Uploaders + 1)
	// data arenas of a pack's size, one being filled and one per uploader
	// being verified and uploaded, plus a tree arena that starts small.
	Uploaders int
	// OnPack, if set, is called (from an upload goroutine) after a pack is
	// durable, before the session ends: the index learns about blobs as soon
	// as they can be read.
	OnPack func(PackInfo) error
	// SpillDir is where a session with more blobs than one index object
	// describes keeps their entries until it writes its index objects (an
	// unlinked temporary file); empty means os.TempDir().
	SpillDir string
}

// DefaultUploaders: two packs in flight keep an S3 connection busy while
// the next pack assembles; more mostly costs memory on a 2-core machine.
// A local store asks for one (see Traits).
const DefaultUploaders = 2

// UploadStats counts what a session stored.
type UploadStats struct {
	Packs        uint64
	StoredBytes  uint64 // bytes of pack objects written
	Blobs        uint64
	RawBytes     uint64        // plaintext bytes of blobs written
	IndexObjects []IndexObject // the index objects the session wrote
}

// Uploader seals blobs into packs and uploads full packs in the background.
// Get one from WithUploader; it is safe for concurrent use.
type Uploader struct {
	r        *Repository
	ctx      context.Context
	packSize int
	onPack   func(PackInfo) error

	mu    sync.Mutex
	open  map[BlobType]*openPack
	spill *indexSpill

	queue chan *openPack
	// arenas is a free list of data arenas: every one has the same
	// capacity and moves between savers and uploaders, which a sync.Pool
	// (emptied by every GC cycle) served poorly. At most maxArenas exist;
	// a saver that needs one more waits for an upload to free one.
	arenas    chan []byte
	made      int      // data arenas allocated, under mu
	peakMade  int      // the most made at once, for tests
	owned     [][]byte // every data arena taken from packArenas, under mu
	maxArenas int
	stats     struct{ packs, stored, blobs, raw atomic.Uint64 }
}

// openPack is a pack being filled. Blobs are sealed straight into its
// arena, each into room reserved for it under the lock (a blob's sealed
// size is known once it is compressed), so savers seal in parallel and
// nothing is copied or allocated per blob. A closed pack is queued for
// upload by whoever finishes its last blob.
type openPack struct {
	typ     BlobType
	arena   []byte // len 0; blobs are sealed into its capacity
	used    int
	blobs   []packedBlob
	sealing int  // blobs with room reserved, not yet sealed
	closed  bool // takes no more blobs
}

// WithUploader runs fn with an Uploader. When fn returns nil, the open packs
// are flushed, every upload is awaited and the index objects describing the
// session's packs are written; only then does WithUploader return, so a
// snapshot written afterwards references only durable data. When fn (or an
// upload) fails, the session is torn down and the error returned; packs
// already uploaded stay unreferenced until garbage collection. fn must not
// return while goroutines it started still use up: the session's pack
// memory is handed to the next session once fn and the uploads are done.
func (r *Repository) WithUploader(ctx context.Context, opts UploadOptions, fn func(ctx context.Context, up *Uploader) error) (UploadStats, error) {
	n := opts.Uploaders
	if n <= 0 {
		n = TraitsOf(r.store).Uploaders
	}
	if n <= 0 {
		n = DefaultUploaders
	}
	g, gctx := errgroup.WithContext(ctx)
	up := &Uploader{
		r: r, ctx: gctx, packSize: r.cfg.PackSize, onPack: opts.OnPack,
		open:   map[BlobType]*openPack{},
		queue:  make(chan *openPack),
		arenas: make(chan []byte, n+1), maxArenas: n + 1,
		spill: &indexSpill{dir: opts.SpillDir},
	}
	defer up.spill.close()
	for range n {
		g.Go(func() error { return up.uploadLoop(gctx) })
	}
	ferr := fn(gctx, up)
	if ferr == nil {
		ferr = up.flush()
	}
	close(up.queue)
	werr := g.Wait()
	// fn and every upload have returned: no arena is in use any more,
	// whether its pack was stored, failed or never closed.
	packArenas.put(up.owned...)
	up.owned = nil
	stats := up.Stats()
	if ferr != nil || werr != nil {
		// An upload error cancels gctx, and fn then usually fails with
		// context.Canceled; the upload error is the one worth reporting.
		if werr != nil && (ferr == nil || errors.Is(ferr, context.Canceled)) {
			return stats, werr
		}
		return stats, ferr
	}
	objs, err := up.spill.write(ctx, r)
	stats.IndexObjects = objs
	return stats, err
}

// Stats returns what the session has stored so far.
func (u *Uploader) Stats() UploadStats {
	return UploadStats{
		Packs: u.stats.packs.Load(), StoredBytes: u.stats.stored.Load(),
		Blobs: u.stats.blobs.Load(), RawBytes: u.stats.raw.Load(),
	}
}

// Add compresses, encrypts and packs one blob. The caller decides that the
// blob is new; Add does not deduplicate. It blocks when uploads lag
// (backpressure) and returns the sealed size.
func (u *Uploader) Add(ctx context.Context, t BlobType, id chunk.ID, plaintext []byte) (int, error) {
	if !t.Valid() {
		return 0, fmt.Errorf("add blob: unknown type %d", t)
	}
	if len(plaintext) > MaxBlobSize {
		return 0, fmt.Errorf("add %s blob %s: %d bytes exceeds the %d limit", t, id.Short(), len(plaintext), MaxBlobSize)
	}
	payload := blobPayload(plaintext)
	defer putPayload(payload)
	n := len(*payload) + Overhead
	u.stats.blobs.Add(1)
	u.stats.raw.Add(uint64(len(plaintext)))

	var op *openPack
	var off int
	for {
		var ready *openPack
		var wait bool
		u.mu.Lock()
		op, off, ready, wait = u.reserve(t, id, n, len(plaintext))
		u.mu.Unlock()
		if ready != nil {
			if err := u.send(ctx, ready); err != nil {
				return 0, err
			}
		}
		if !wait {
			break
		}
		if err := u.awaitArena(ctx); err != nil {
			return 0, err
		}
	}

	room := op.arena[off : off : off+n]
	sealed := u.r.sealer.seal(room, *payload, blobAD(t, id))
	if len(sealed) != n || &sealed[:1][0] != &op.arena[:off+1][off] {
		return 0, fmt.Errorf("add %s blob %s: sealed %d bytes into %d reserved", t, id.Short(), len(sealed), n)
	}

	u.mu.Lock()
	op.sealing--
	var ready *openPack
	if op.closed && op.sealing == 0 {
		ready = op
	}
	u.mu.Unlock()
	if ready != nil {
		if err := u.send(ctx, ready); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// reserve finds room for a sealed blob of n bytes in the open pack of
// type t, closing a full one (returned as ready when nobody seals into it
// any more, for the caller to send) and opening another. When another
// data arena may not be made yet, it reserves nothing and returns wait:
// the caller sends ready, waits for an arena and tries again. Called
// under u.mu.
func (u *Uploader) reserve(t BlobType, id chunk.ID, n, rawLen int) (op *openPack, off int, ready *openPack, wait bool) {
	op = u.open[t]
	if op != nil && op.used+n > cap(op.arena) && op.sealing == 0 && op.used+n <= u.packSize {
		// A small arena (see newArena) grows while nobody seals into it.
		grown := make([]byte, 0, min(max(2*cap(op.arena), op.used+n), u.packSize))
		op.arena = append(grown, op.arena[:op.used]...)[:0]
	}
	if op != nil && op.used+n > cap(op.arena) {
		// Does not fit: the pack is done without this blob.
		op.closed = true
		delete(u.open, t)
		if op.sealing == 0 {
			ready = op
		}
		op = nil
	}
	if op == nil {
		arena, ok := u.newArena(t, n)
		if !ok {
			return nil, 0, ready, true
		}
		op = &openPack{typ: t, arena: arena}
		u.open[t] = op
	}
	off = op.used
	op.used += n
	op.blobs = append(op.blobs, packedBlob{t: t, id: id, off: uint32(off), len: uint32(n), rawLen: uint32(rawLen)})
	op.sealing++
	if op.used >= u.packSize || len(op.blobs) >= maxPackBlobs {
		op.closed = true
		delete(u.open, t)
	}
	return op, off, ready, false
}

// newArena returns an empty arena for a new pack of type t with room for
// at least n bytes, or false when every data arena allowed is in use.
// Tree packs start small and grow, since most backups end with a tree
// pack of a few KiB; data packs fill fast and take a pack-sized arena,
// reused from the free list when one is there. Called under u.mu.
func (u *Uploader) newArena(t BlobType, n int) ([]byte, bool) {
	if t == TreeBlob {
		return make([]byte, 0, min(max(n, 256<<10), max(n, u.packSize))), true
	}
	select {
	case a := <-u.arenas:
		if cap(a) >= n {
			return a, true
		}
		u.made-- // too small for this blob: let it go
	default:
	}
	if u.made >= u.maxArenas {
		return nil, false
	}
	u.made++
	u.peakMade = max(u.peakMade, u.made)
	a := packArenas.get(max(u.packSize, n))
	u.owned = append(u.owned, a)
	return a, true
}

// awaitArena waits until an upload returns a data arena to the free list.
func (u *Uploader) awaitArena(ctx context.Context) error {
	select {
	case a := <-u.arenas:
		u.arenas <- a // for the caller's next try; there is room
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// putArena returns the arena of a stored pack: a data arena to the free
// list; a tree arena (made apart, usually small) to the collector.
func (u *Uploader) putArena(op *openPack) {
	if op.typ != DataBlob {
		return
	}
	a := op.arena
	select {
	case u.arenas <- a[:0]:
	default:
		// Cannot happen while at most maxArenas exist; if it did, the
		// arena is dropped and another may be made.
		u.mu.Lock()
		u.made--
		u.mu.Unlock()
	}
}

func (u *Uploader) send(ctx context.Context, op *openPack) error {
	select {
	case u.queue <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// flush queues the packs still open. It runs after every Add returned.
func (u *Uploader) flush() error {
	u.mu.Lock()
	var pending []*openPack
	for t, op := range u.open {
		op.closed = true
		pending = append(pending, op)
		delete(u.open, t)
	}
	u.mu.Unlock()
	for _, op := range pending {
		if err := u.send(u.ctx, op); err != nil {
			return err
		}
	}
	return nil
}

func (u *Uploader) uploadLoop(ctx context.Context) error {
	// Each uploader keeps its piece list, header and verification buffers.
	var pieces Pieces
	var hdr []byte
	var sc scratch
	defer sc.close()
	for op := range u.queue {
		info, p, h, err := u.r.assemblePack(op.arena[:op.used], op.blobs, pieces, hdr, &sc)
		pieces, hdr = p, h
		if err == nil {
			if err = PutPieces(ctx, u.r.store, info.ID.ObjectName(), pieces); err != nil {
				err = fmt.Errorf("upload pack %s: %w", info.ID, err)
			}
		}
		// The pieces point into the arena; it is free once they are stored.
		clear(pieces)
		u.putArena(op)
		if err != nil {
			return err
		}
		u.stats.packs.Add(1)
		u.stats.stored.Add(uint64(info.Size))
		if u.onPack != nil {
			if err := u.onPack(info); err != nil {
				return err
			}
		}
		if err := u.spill.add(info); err != nil {
			return err
		}
	}
	return nil
}
