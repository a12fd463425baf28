package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// ErrImplausible: garbage collection refused because the live set looks
// wrong (a short listing, a vanished catalog); nothing was deleted.
var ErrImplausible = errors.New("live set implausible; nothing deleted")

// GCOptions tune garbage collection.
type GCOptions struct {
	DryRun bool
	// RepackThreshold: a pack whose dead share is above this is rewritten
	// with only its live blobs. Zero means DefaultRepackThreshold.
	RepackThreshold float64
	// Grace: pack objects no index describes are deleted only when older
	// than this, since an upload may still be in flight. Zero means
	// DefaultGrace.
	Grace time.Duration
	// Force skips the plausibility checks.
	Force bool
	Now   func() time.Time
	// Roots, if set, returns what must stay besides the live snapshots:
	// in fleet mode the parents, answered chunks and packs of open
	// sessions.
	Roots func() (Roots, error)
	// Condemn, if set, is called once marking is done with a test of
	// liveness. In one step serialized with its own lookups, the caller
	// returns what it answered or accepted since Roots (late roots, kept
	// too) and from then on answers every other blob as unseen, so no
	// session can start to depend on a blob about to be deleted.
	Condemn func(live func(BlobRef) bool) (Roots, error)
	// Log is told what is being done, one line at a time.
	Log       func(string)
	Uploaders int
}

// Roots are extra marks for garbage collection.
type Roots struct {
	Trees []chunk.ID // root trees, walked like a snapshot's
	Blobs []BlobRef
	Packs []repo.PackID
}

const (
	// DefaultRepackThreshold: rewrite packs more than 20 % dead.
	DefaultRepackThreshold = 0.2
	// DefaultGrace: an hour is far longer than any single pack upload.
	DefaultGrace = time.Hour
)

// GCStats says what a collection found and did.
type GCStats struct {
	LiveSnapshots   int      `json:"live_snapshots"`
	LiveBlobs       int      `json:"live_blobs"`
	DeadBlobs       int      `json:"dead_blobs"`
	PacksDeleted    int      `json:"packs_deleted"`
	PacksRepacked   int      `json:"packs_repacked"`
	PacksUnindexed  int      `json:"packs_unindexed_deleted"`
	PacksInGrace    int      `json:"packs_unindexed_in_grace"`
	PacksWritten    uint64   `json:"packs_written"`
	BytesFreed      uint64   `json:"bytes_freed"`   // sizes of deleted packs
	BytesWritten    uint64   `json:"bytes_written"` // sizes of repacked output
	IndexObjects    int      `json:"index_objects_replaced"`
	Plan            []string `json:"plan,omitempty"`
	StoredBytesLeft uint64   `json:"stored_bytes_left"`
}

type packPlan struct {
	stat      index.PackStat
	live      []repo.BlobEntry // attributed to this pack and live
	liveBytes int64
}

// GC deletes what no live snapshot (or extra root) references. The order
// makes every crash safe: live blobs of packs to repack are copied to new
// packs first; then one index describing only live blobs is written; then
// the index objects it replaces are deleted; only then are packs deleted.
// A crash at any point leaves every live blob indexed and stored; at worst
// some packs are left unreferenced, for a later run to delete after the
// grace period.
func GC(ctx context.Context, l *Local, opts GCOptions) (st GCStats, err error) {
	// Other processes sharing the bucket (embedded mode elsewhere) have
	// no session here to mark from: deleting waits until none is at work.
	// A dry run deletes nothing and needs only to keep collections out.
	ctx, lk, err := l.Lock(ctx, "gc", !opts.DryRun)
	if err != nil {
		return st, err
	}
	defer unlock(ctx, lk, &err)
	if opts.RepackThreshold == 0 {
		opts.RepackThreshold = DefaultRepackThreshold
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			opts.Log(fmt.Sprintf(format, a...))
		}
	}
	r, ix := l.Repo, l.Index

	// The index objects this run starts from; only these are replaced.
	// Listed before the sync, so the sync reads every one of them: an
	// object written between the two would be replaced by an index that
	// lacks its packs.
	oldIndex, err := r.ListIndexNames(ctx)
	if err != nil {
		return st, err
	}
	if _, err := ix.Sync(ctx, r); err != nil {
		return st, err
	}

	live, err := liveSnapshots(ctx, l)
	if err != nil {
		return st, err
	}
	var roots Roots
	if opts.Roots != nil {
		if roots, err = opts.Roots(); err != nil {
			return st, fmt.Errorf("gc roots: %w", err)
		}
	}
	st.LiveSnapshots = len(live)
	logf("marking from %d snapshots and %d session roots", len(live), len(roots.Trees))
	marked, err := mark(ctx, l, rootTrees(live, roots.Trees))
	if err != nil {
		return st, err
	}
	keepPacks := map[repo.PackID]bool{}
	// addRoots marks rs into dst.
	addRoots := func(dst map[blobKey]struct{}, rs Roots) error {
		extra, err := mark(ctx, l, rs.Trees)
		if err != nil {
			return err
		}
		for k := range extra {
			dst[k] = struct{}{}
		}
		for _, b := range rs.Blobs {
			dst[blobKey{b.Type, b.ID}] = struct{}{}
		}
		for _, p := range rs.Packs {
			keepPacks[p] = true
		}
		return nil
	}
	roots.Trees = nil
	if err := addRoots(marked, roots); err != nil {
		return st, err
	}
	// The packs this run may delete or repack, fixed before Condemn: from
	// then on sessions register and commit packs nothing here has marked.
	// Packs indexed later are left alone, as unindexed packs in their
	// grace period.
	packs, err := ix.Packs()
	if err != nil {
		return st, err
	}
	// Only packs the replaced index objects describe may go. Any other
	// indexed pack is described by an index object this run leaves in
	// place (a session that finished after the listing) or by none yet (an
	// upload in progress); deleting it would leave the bucket describing a
	// pack that is gone, and when the index points a live blob at a second
	// copy elsewhere, its pack would look dead.
	replaced, err := packsDescribedBy(ctx, l, oldIndex)
	if err != nil {
		return st, err
	}
	for _, p := range packs {
		if !replaced[p.ID] {
			keepPacks[p.ID] = true
		}
	}
	// Late roots go to their own set: marked is read by the caller's
	// lookups from the moment Condemn is called and must not change.
	lateMarked := map[blobKey]struct{}{}
	if opts.Condemn != nil {
		late, err := opts.Condemn(func(b BlobRef) bool {
			_, ok := marked[blobKey{b.Type, b.ID}]
			return ok
		})
		if err != nil {
			return st, err
		}
		if err := addRoots(lateMarked, late); err != nil {
			return st, err
		}
	}
	isMarked := func(k blobKey) bool {
		if _, ok := marked[k]; ok {
			return true
		}
		_, ok := lateMarked[k]
		return ok
	}

	plans := map[repo.PackID]*packPlan{}
	for _, p := range packs {
		plans[p.ID] = &packPlan{stat: p}
	}
	err = ix.EachBlob(func(loc index.Location) error {
		p := plans[loc.Pack]
		if p == nil {
			return nil // a pack entry is missing; the blob is ignored
		}
		if isMarked(blobKey{loc.Entry.Type, loc.Entry.ID}) {
			p.live = append(p.live, loc.Entry)
			p.liveBytes += int64(loc.Entry.Length)
			st.LiveBlobs++
		} else {
			st.DeadBlobs++
		}
		return nil
	})
	if err != nil {
		return st, err
	}

	if err := plausible(l, st, len(packs), opts.Force); err != nil {
		return st, err
	}

	var deletePacks, repackPacks []*packPlan
	var keptInfos []repo.PackInfo
	for _, p := range sortedPlans(plans) {
		switch {
		case keepPacks[p.stat.ID]:
			keptInfos = append(keptInfos, packInfo(p))
		case len(p.live) == 0:
			deletePacks = append(deletePacks, p)
			st.Plan = append(st.Plan, fmt.Sprintf("delete pack %s (%d bytes, no live blob)", p.stat.ID, p.stat.Size))
		case 1-float64(p.liveBytes)/float64(p.stat.Size) > opts.RepackThreshold:
			repackPacks = append(repackPacks, p)
			st.Plan = append(st.Plan, fmt.Sprintf("repack pack %s (%d of %d bytes live)", p.stat.ID, p.liveBytes, p.stat.Size))
		default:
			keptInfos = append(keptInfos, packInfo(p))
		}
	}

	// Pack objects no index knows: leftovers of interrupted backups or
	// runs. Deleted only after the grace period.
	var unindexed []repo.PackID
	now := opts.Now()
	err = r.Store().List(ctx, "data/", func(oi repo.ObjectInfo) error {
		i := strings.LastIndex(oi.Name, "/")
		id, err := repo.ParsePackID(oi.Name[i+1:])
		if err != nil || plans[id] != nil || keepPacks[id] {
			return nil
		}
		if now.Sub(oi.ModTime) < opts.Grace {
			st.PacksInGrace++
			return nil
		}
		unindexed = append(unindexed, id)
		st.BytesFreed += uint64(oi.Size)
		st.Plan = append(st.Plan, fmt.Sprintf("delete unindexed pack %s (%d bytes, %s old)", id, oi.Size, now.Sub(oi.ModTime).Round(time.Second)))
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, p := range deletePacks {
		st.BytesFreed += uint64(p.stat.Size)
	}
	for _, p := range repackPacks {
		st.BytesFreed += uint64(p.stat.Size)
	}
	st.PacksDeleted, st.PacksRepacked, st.PacksUnindexed = len(deletePacks), len(repackPacks), len(unindexed)
	if opts.DryRun {
		return st, nil
	}
	if len(deletePacks)+len(repackPacks)+len(unindexed) == 0 && st.DeadBlobs == 0 {
		logf("nothing to collect")
		return st, nil
	}

	// 1. Copy the live blobs of packs to repack.
	var repackIndexes []string
	if len(repackPacks) > 0 {
		logf("repacking %d packs", len(repackPacks))
		// New packs are indexed as they land, so lookups and commit checks
		// find their blobs there before the old packs go.
		var newPacks []repo.PackInfo
		var newMu sync.Mutex
		upOpts := repo.UploadOptions{Uploaders: opts.Uploaders, SpillDir: spillDir(ix), OnPack: func(p repo.PackInfo) error {
			newMu.Lock()
			newPacks = append(newPacks, p)
			newMu.Unlock()
			return ix.AddPacks([]repo.PackInfo{p})
		}}
		upStats, err := r.WithUploader(ctx, upOpts, func(ctx context.Context, up *repo.Uploader) error {
			for _, p := range repackPacks {
				entries := append([]repo.BlobEntry(nil), p.live...)
				sort.Slice(entries, func(i, j int) bool { return entries[i].Offset < entries[j].Offset })
				for len(entries) > 0 {
					// Bounded range reads, so memory stays near one pack.
					n := 1
					for n < len(entries) && int64(entries[n].Offset+entries[n].Length)-int64(entries[0].Offset) <= 32<<20 {
						n++
					}
					err := r.ReadBlobs(ctx, p.stat.ID, entries[:n], func(e repo.BlobEntry, plain []byte) error {
						_, err := up.Add(ctx, e.Type, e.ID, plain)
						return err
					})
					if err != nil {
						return fmt.Errorf("repack: %w", err)
					}
					entries = entries[n:]
				}
			}
			return nil
		})
		if err != nil {
			return st, err
		}
		st.PacksWritten, st.BytesWritten = upStats.Packs, upStats.StoredBytes
		for _, o := range upStats.IndexObjects {
			repackIndexes = append(repackIndexes, o.Name)
		}
		keptInfos = append(keptInfos, newPacks...)
	}

	// 2. One index of the live blobs. Dead blobs leave the dedup index here,
	// before any object is deleted.
	if _, err := r.WriteIndexes(ctx, keptInfos); err != nil {
		return st, err
	}
	// 3. Replace the index objects this run started from, and the repack
	// session's own (its packs are in the new index). Index objects written
	// since the start (a backup in fleet mode) are left alone.
	replace := make([]string, 0, len(oldIndex)+len(repackIndexes))
	for _, o := range oldIndex {
		replace = append(replace, o.Name)
	}
	replace = append(replace, repackIndexes...)
	for _, name := range replace {
		if err := r.DeleteIndex(ctx, name); err != nil && !errors.Is(err, repo.ErrNotFound) {
			return st, err
		}
	}
	st.IndexObjects = len(oldIndex)
	// 4. Delete packs.
	logf("deleting %d packs", len(deletePacks)+len(repackPacks)+len(unindexed))
	for _, p := range append(deletePacks, repackPacks...) {
		if err := r.Store().Delete(ctx, p.stat.ID.ObjectName()); err != nil && !errors.Is(err, repo.ErrNotFound) {
			return st, err
		}
	}
	for _, id := range unindexed {
		if err := r.Store().Delete(ctx, id.ObjectName()); err != nil && !errors.Is(err, repo.ErrNotFound) {
			return st, err
		}
	}
	for _, p := range append(deletePacks, repackPacks...) {
		r.ForgetPacks(p.stat.ID)
	}
	r.ForgetPacks(unindexed...)
	if _, err := ix.Sync(ctx, r); err != nil {
		return st, err
	}
	for _, p := range keptInfos {
		st.StoredBytesLeft += uint64(p.Size)
	}
	if err := ix.SetMeta("gc-last", fmt.Sprintf("%d %d", st.LiveSnapshots, st.LiveBlobs)); err != nil {
		return st, err
	}
	return st, ix.Flush()
}

// packsDescribedBy returns the packs the index objects objs describe,
// from what the index recorded when it read them, else from the objects.
func packsDescribedBy(ctx context.Context, l *Local, objs []repo.ObjectInfo) (map[repo.PackID]bool, error) {
	out := map[repo.PackID]bool{}
	for _, o := range objs {
		ids, ok, err := l.Index.IndexObjectPacks(o.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			infos, err := l.Repo.ReadIndex(ctx, o.Name)
			if errors.Is(err, repo.ErrNotFound) {
				continue // it describes nothing any more
			}
			if err != nil {
				return nil, err
			}
			ids = repo.PackIDs(infos)
		}
		for _, id := range ids {
			out[id] = true
		}
	}
	return out, nil
}

func packInfo(p *packPlan) repo.PackInfo {
	return repo.PackInfo{ID: p.stat.ID, Size: p.stat.Size, Blobs: p.live}
}

func sortedPlans(m map[repo.PackID]*packPlan) []*packPlan {
	out := make([]*packPlan, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].stat.ID[:]) < string(out[j].stat.ID[:]) })
	return out
}

// plausible refuses collections whose live set looks like a failed read
// rather than a real change: no live snapshot while packs exist, or live
// blobs down to a quarter of the last run's while snapshots did not halve.
func plausible(l *Local, st GCStats, packs int, force bool) error {
	if force {
		return nil
	}
	if st.LiveSnapshots == 0 && packs > 0 {
		return fmt.Errorf("no live snapshot but %d packs (forgot everything? use --force): %w", packs, ErrImplausible)
	}
	last, err := l.Index.Meta("gc-last")
	if err != nil || last == "" {
		return err
	}
	f := strings.Fields(last)
	if len(f) != 2 {
		return nil
	}
	lastSnaps, _ := strconv.Atoi(f[0])
	lastBlobs, _ := strconv.Atoi(f[1])
	if st.LiveBlobs*4 < lastBlobs && st.LiveSnapshots*2 >= lastSnaps {
		return fmt.Errorf("live blobs fell from %d to %d while snapshots went from %d to %d (use --force if that is right): %w",
			lastBlobs, st.LiveBlobs, lastSnaps, st.LiveSnapshots, ErrImplausible)
	}
	return nil
}

type blobKey struct {
	t  repo.BlobType
	id chunk.ID
}

// liveSnapshots are the snapshot objects that exist: the bucket listing
// joined with the catalog (a short listing must not drop a snapshot the
// catalog knows), each confirmed by reading it.
func liveSnapshots(ctx context.Context, l *Local) ([]*repo.Snapshot, error) {
	ids, err := l.Repo.ListSnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	cat, err := l.Index.Snapshots()
	if err != nil {
		return nil, err
	}
	seen := map[repo.SnapshotID]bool{}
	for _, sn := range cat {
		ids = append(ids, sn.ID)
	}
	var out []*repo.Snapshot
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		sn, err := l.Repo.LoadSnapshot(ctx, id)
		if errors.Is(err, repo.ErrNotFound) {
			continue // forgotten
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot %s is unreadable, so its data cannot be marked: %w", id, err)
		}
		out = append(out, sn)
	}
	return out, nil
}

func rootTrees(sns []*repo.Snapshot, extra []chunk.ID) []chunk.ID {
	out := append([]chunk.ID(nil), extra...)
	for _, sn := range sns {
		out = append(out, sn.Tree)
	}
	return out
}

// mark returns every tree and data blob reachable from the root trees. A
// reachable blob missing from the index aborts: deleting anything then
// could lose data.
func mark(ctx context.Context, l *Local, roots []chunk.ID) (map[blobKey]struct{}, error) {
	marked := map[blobKey]struct{}{}
	var queue []chunk.ID
	for _, id := range roots {
		k := blobKey{repo.TreeBlob, id}
		if _, ok := marked[k]; !ok {
			marked[k] = struct{}{}
			queue = append(queue, id)
		}
	}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		t, err := LoadTree(ctx, l.Repo, l.Index, id)
		if err != nil {
			return nil, fmt.Errorf("live tree %s: %w (%w)", id.Short(), err, ErrImplausible)
		}
		for i := range t.Nodes {
			n := &t.Nodes[i]
			switch n.Type {
			case repo.NodeDir:
				k := blobKey{repo.TreeBlob, n.Subtree}
				if _, ok := marked[k]; !ok {
					marked[k] = struct{}{}
					queue = append(queue, n.Subtree)
				}
			case repo.NodeFile:
				for _, c := range n.Content {
					k := blobKey{repo.DataBlob, c}
					if _, ok := marked[k]; ok {
						continue
					}
					has, err := l.Index.Has(repo.DataBlob, c)
					if err != nil {
						return nil, err
					}
					if !has {
						return nil, fmt.Errorf("live chunk %s of %s is not indexed: %w", c, n.Name, ErrImplausible)
					}
					marked[k] = struct{}{}
				}
			}
		}
	}
	return marked, nil
}
