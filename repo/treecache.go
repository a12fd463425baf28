package repo

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// treePacks caches whole tree packs for walks that read many trees of one
// pack: a backup comparing with its parent, a restore, a collection
// marking. Every directory used to cost a range request (on S3: 1,233
// requests for a no-change backup of a 1,224-directory tree). A pack is
// fetched whole once it has been read treePackMisses times, so a walk of a
// few trees (one file's path) stays a few small reads. A local store, where
// a range read is as cheap as the cache, is not cached at all (on a
// million files the cache would cost up to 64 MiB for nothing). Packs never
// change, so the cache needs no invalidation for correctness; entries
// expire so a long-running daemon neither keeps memory nor serves a
// deleted pack for long, and collections drop the packs they delete.
type treePacks struct {
	mu      sync.Mutex
	misses  map[PackID]int
	packs   map[PackID]*cachedPack
	fetches map[PackID]chan struct{}
	size    int64
}

type cachedPack struct {
	data []byte
	at   time.Time
}

const (
	treePackMisses = 4
	treeCacheLimit = 64 << 20
	treeCacheTTL   = time.Minute
	// maxCachedPack: a tree pack larger than this is read by ranges.
	maxCachedPack = 32 << 20
)

func newTreePacks() *treePacks {
	return &treePacks{misses: map[PackID]int{}, packs: map[PackID]*cachedPack{}, fetches: map[PackID]chan struct{}{}}
}

// get returns the cached pack, or whether it is now worth fetching whole.
func (c *treePacks) get(id PackID, now time.Time) (data []byte, fetch bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.packs[id]; p != nil {
		if now.Sub(p.at) < treeCacheTTL {
			return p.data, false
		}
		c.dropLocked(id)
	}
	c.misses[id]++
	return nil, c.misses[id] >= treePackMisses
}

func (c *treePacks) dropLocked(id PackID) {
	if p := c.packs[id]; p != nil {
		c.size -= int64(len(p.data))
		delete(c.packs, id)
	}
	delete(c.misses, id)
}

// drop forgets packs (deleted by a collection).
func (c *treePacks) drop(ids ...PackID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.dropLocked(id)
	}
}

// fetch reads pack id whole into the cache, once however many ask.
func (c *treePacks) fetch(ctx context.Context, st Store, id PackID) ([]byte, error) {
	c.mu.Lock()
	if p := c.packs[id]; p != nil {
		c.mu.Unlock()
		return p.data, nil
	}
	if wait, ok := c.fetches[id]; ok {
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if p := c.packs[id]; p != nil {
			return p.data, nil
		}
		return nil, fmt.Errorf("pack %s: fetched by another reader without success", id)
	}
	done := make(chan struct{})
	c.fetches[id] = done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.fetches, id)
		c.mu.Unlock()
		close(done)
	}()

	oi, err := st.Stat(ctx, id.ObjectName())
	if err != nil {
		return nil, err
	}
	if oi.Size > maxCachedPack {
		return nil, fmt.Errorf("pack %s: %d bytes, too large to cache", id, oi.Size)
	}
	data, err := st.Get(ctx, id.ObjectName(), 0, -1)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.size+int64(len(data)) > treeCacheLimit && len(c.packs) > 0 {
		var oldest PackID
		var at time.Time
		for pid, p := range c.packs {
			if at.IsZero() || p.at.Before(at) {
				oldest, at = pid, p.at
			}
		}
		c.dropLocked(oldest)
	}
	c.packs[id] = &cachedPack{data: data, at: time.Now()}
	c.size += int64(len(data))
	return data, nil
}

// cachedTree returns the sealed tree blob e of pack from the cache,
// fetching the pack whole when it has been read often enough; nil when
// the caller should read the blob by its range.
func (r *Repository) cachedTree(ctx context.Context, pack PackID, e BlobEntry) []byte {
	if TraitsOf(r.store).Local {
		return nil
	}
	data, fetch := r.trees.get(pack, time.Now())
	if data == nil && fetch {
		// A failed fetch only costs the fast path; the range read
		// reports the error.
		data, _ = r.trees.fetch(ctx, r.store, pack)
	}
	if data == nil || int64(e.Offset)+int64(e.Length) > int64(len(data)) {
		return nil
	}
	return data[e.Offset : e.Offset+e.Length]
}

// ForgetPacks drops deleted packs from the tree cache.
func (r *Repository) ForgetPacks(ids ...PackID) { r.trees.drop(ids...) }
