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
	// zero means DefaultUploaders. Memory in flight is about
	// (Uploaders + 3) × pack size.
	Uploaders int
	// OnPack, if set, is called (from an upload goroutine) after a pack is
	// durable, before the session ends: the index learns about blobs as soon
	// as they can be read.
	OnPack func(PackInfo) error
}

// DefaultUploaders: two packs in flight saturate a local disk and keep an
// S3 connection busy while the next pack assembles; more mostly costs
// memory on a 2-core machine.
const DefaultUploaders = 2

// UploadStats counts what a session stored.
type UploadStats struct {
	Packs       uint64
	StoredBytes uint64 // bytes of pack objects written
	Blobs       uint64
	RawBytes    uint64 // plaintext bytes of blobs written
	IndexObject string // name of the index object the session wrote, if any
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
	packs []PackInfo

	queue chan []sealedBlob
	stats struct{ packs, stored, blobs, raw atomic.Uint64 }
}

type openPack struct {
	blobs []sealedBlob
	size  int
}

// WithUploader runs fn with an Uploader. When fn returns nil, the open packs
// are flushed, every upload is awaited and one index object describing the
// session's packs is written; only then does WithUploader return, so a
// snapshot written afterwards references only durable data. When fn (or an
// upload) fails, the session is torn down and the error returned; packs
// already uploaded stay unreferenced until garbage collection.
func (r *Repository) WithUploader(ctx context.Context, opts UploadOptions, fn func(ctx context.Context, up *Uploader) error) (UploadStats, []PackInfo, error) {
	n := opts.Uploaders
	if n <= 0 {
		n = DefaultUploaders
	}
	g, gctx := errgroup.WithContext(ctx)
	up := &Uploader{
		r: r, ctx: gctx, packSize: r.cfg.PackSize, onPack: opts.OnPack,
		open:  map[BlobType]*openPack{},
		queue: make(chan []sealedBlob, 1),
	}
	for range n {
		g.Go(func() error { return up.uploadLoop(gctx) })
	}
	ferr := fn(gctx, up)
	if ferr == nil {
		ferr = up.flush()
	}
	close(up.queue)
	werr := g.Wait()
	stats := up.Stats()
	if ferr != nil || werr != nil {
		// An upload error cancels gctx, and fn then usually fails with
		// context.Canceled; the upload error is the one worth reporting.
		if werr != nil && (ferr == nil || errors.Is(ferr, context.Canceled)) {
			return stats, nil, werr
		}
		return stats, nil, ferr
	}
	if len(up.packs) > 0 {
		name, err := r.WriteIndex(ctx, up.packs)
		if err != nil {
			return stats, nil, err
		}
		stats.IndexObject = name
	}
	return stats, up.packs, nil
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
	sp := getBuf(&sealedPool, len(plaintext)+Overhead+16)
	*sp = u.r.sealBlob(*sp, t, id, plaintext)
	// Once in a pack the buffer belongs to the pack's assembly, which
	// returns it to the pool: read nothing of it after the hand-off.
	sealedLen := len(*sp)
	u.stats.blobs.Add(1)
	u.stats.raw.Add(uint64(len(plaintext)))

	u.mu.Lock()
	op := u.open[t]
	if op == nil {
		op = &openPack{}
		u.open[t] = op
	}
	op.blobs = append(op.blobs, sealedBlob{t: t, id: id, sealed: sp, rawLen: len(plaintext)})
	op.size += sealedLen
	var full []sealedBlob
	if op.size >= u.packSize || len(op.blobs) >= maxPackBlobs {
		full = op.blobs
		delete(u.open, t)
	}
	u.mu.Unlock()

	if full != nil {
		if err := u.send(ctx, full); err != nil {
			return 0, err
		}
	}
	return sealedLen, nil
}

func (u *Uploader) send(ctx context.Context, blobs []sealedBlob) error {
	select {
	case u.queue <- blobs:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

func (u *Uploader) flush() error {
	u.mu.Lock()
	var pending [][]sealedBlob
	for t, op := range u.open {
		pending = append(pending, op.blobs)
		delete(u.open, t)
	}
	u.mu.Unlock()
	for _, blobs := range pending {
		if err := u.send(u.ctx, blobs); err != nil {
			return err
		}
	}
	return nil
}

func (u *Uploader) uploadLoop(ctx context.Context) error {
	for blobs := range u.queue {
		info, bp, err := u.r.assemblePack(blobs)
		if err != nil {
			return err
		}
		err = u.r.store.Put(ctx, info.ID.ObjectName(), *bp)
		packPool.Put(bp)
		if err != nil {
			return fmt.Errorf("upload pack %s: %w", info.ID, err)
		}
		u.stats.packs.Add(1)
		u.stats.stored.Add(uint64(info.Size))
		if u.onPack != nil {
			if err := u.onPack(info); err != nil {
				return err
			}
		}
		u.mu.Lock()
		u.packs = append(u.packs, info)
		u.mu.Unlock()
	}
	return nil
}
