package agent_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
)

// listHook runs before, once armed, the next listing of a prefix: a way to
// put another writer's step exactly between two of a collection's.
type listHook struct {
	repo.Store
	mu     sync.Mutex
	prefix string
	skip   int // listings of prefix to let through first
	fn     func()
}

func (h *listHook) arm(prefix string, skip int, fn func()) {
	h.mu.Lock()
	h.prefix, h.skip, h.fn = prefix, skip, fn
	h.mu.Unlock()
}

func (h *listHook) List(ctx context.Context, prefix string, fn func(repo.ObjectInfo) error) error {
	h.mu.Lock()
	var run func()
	if h.fn != nil && strings.HasPrefix(prefix, h.prefix) {
		if h.skip == 0 {
			run, h.fn = h.fn, nil
		} else {
			h.skip--
		}
	}
	h.mu.Unlock()
	if run != nil {
		run()
	}
	return h.Store.List(ctx, prefix, fn)
}

// gcRaceSetup makes a repository with dead blobs so that a collection
// rewrites the index and deletes packs.
func gcRaceSetup(t *testing.T, st repo.Store) (*agent.Local, string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	l := newLocalPacks(t, st, 1<<20)
	writeState(t, src, 1)
	first := snapshot(t, l, src, nil)
	writeState(t, src, 40)
	snapshot(t, l, src, nil)
	if err := l.Forget(context.Background(), []repo.SnapshotID{first.ID}); err != nil {
		t.Fatal(err)
	}
	return l, src
}

// restoresFromScratch proves sn restores byte-identically from what the
// bucket alone says: a fresh index, then check --read-data.
func restoresFromScratch(t *testing.T, st repo.Store, sn *repo.Snapshot, src string) {
	t.Helper()
	fresh := openLocal(t, st, t.TempDir())
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := agent.Restore(context.Background(), fresh.Repo, fresh.Index, sn, "", agent.RestoreOptions{Target: dst}); err != nil {
		t.Fatalf("restore of the snapshot committed during gc: %v", err)
	}
	compareTrees(t, src, dst)
	checkHealthy(t, fresh)
}

// A backup that commits once the collection has marked (in fleet mode: a
// session that registers and commits packs after the condemn step) must
// not lose its packs, though nothing marked them.
func TestGCKeepsPacksCommittedAfterMarking(t *testing.T) {
	st := mem.New()
	l, src := gcRaceSetup(t, st)
	var late *repo.Snapshot
	_, err := agent.GC(context.Background(), l, agent.GCOptions{
		Condemn: func(func(agent.BlobRef) bool) (agent.Roots, error) {
			writeState(t, src, 80)
			late = snapshot(t, l, src, nil)
			return agent.Roots{}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	restoresFromScratch(t, st, late, src)
}

// An index object written after the collection's sync but before it lists
// the index objects it will replace (in fleet mode: an agent finishing its
// uploads, its packs registered with its session) must not be replaced by
// an index that lacks those packs.
func TestGCKeepsIndexObjectsWrittenWhileStarting(t *testing.T) {
	hook := &listHook{Store: mem.New()}
	l, _ := gcRaceSetup(t, hook)
	other := openLocal(t, hook, t.TempDir())
	src := filepath.Join(t.TempDir(), "other")
	writeState(t, src, 120)
	var pending *repo.Snapshot
	// The collection lists index objects twice at its start (its sync,
	// and what it replaces); the other writer uploads in between and
	// commits only after the collection is done.
	hook.arm("index/", 1, func() {
		sn, err := agent.Backup(context.Background(), other.Repo, other.Index, agent.BackupOptions{
			Node: "other", Path: src,
			Commit: func(_ context.Context, sn *repo.Snapshot) (repo.SnapshotID, error) {
				pending = sn
				return "pending", nil
			},
		})
		if err != nil || sn == nil {
			t.Errorf("backup during gc: %v", err)
		}
	})
	// As at the coordinator, the packs the open session registered are
	// roots.
	roots := func() (agent.Roots, error) {
		var rs agent.Roots
		packs, err := other.Index.Packs()
		for _, p := range packs {
			rs.Packs = append(rs.Packs, p.ID)
		}
		return rs, err
	}
	if _, err := agent.GC(context.Background(), l, agent.GCOptions{Roots: roots}); err != nil {
		t.Fatal(err)
	}
	if pending == nil {
		t.Fatal("the other writer never ran")
	}
	pending.ID = ""
	if err := other.Repo.SaveSnapshot(context.Background(), pending); err != nil {
		t.Fatal(err)
	}
	restoresFromScratch(t, hook, pending, src)
}

// A backup's own index object is known to the index it filled, so the
// next run's sync reads nothing (it used to re-add every blob).
func TestSnapshotLeavesNothingForTheNextSync(t *testing.T) {
	l := newLocal(t, mem.New())
	src := filepath.Join(t.TempDir(), "src")
	writeState(t, src, 1)
	snapshot(t, l, src, nil)
	st, err := l.Index.Sync(context.Background(), l.Repo)
	if err != nil {
		t.Fatal(err)
	}
	if st.IndexObjects != 0 || st.Reloaded {
		t.Errorf("sync after a snapshot read %d index objects (reloaded %v), want 0", st.IndexObjects, st.Reloaded)
	}
}

// Forgetting a snapshot whose tree a live one shares frees nothing, so
// the collection after retention can be skipped; any other tree may free
// data.
func TestFreesData(t *testing.T) {
	l := newLocal(t, mem.New())
	src := filepath.Join(t.TempDir(), "src")
	writeState(t, src, 1)
	a := snapshot(t, l, src, nil)
	b := snapshot(t, l, src, nil) // unchanged: same tree
	writeState(t, src, 2)
	c := snapshot(t, l, src, nil)
	if a.Tree != b.Tree || a.Tree == c.Tree {
		t.Fatalf("trees: %s %s %s", a.Tree.Short(), b.Tree.Short(), c.Tree.Short())
	}
	if err := l.Forget(context.Background(), []repo.SnapshotID{a.ID}); err != nil {
		t.Fatal(err)
	}
	if freed, err := agent.FreesData(l, []*repo.Snapshot{a}); err != nil || freed {
		t.Errorf("forgetting a snapshot whose tree b shares: freed %v, %v", freed, err)
	}
	if err := l.Forget(context.Background(), []repo.SnapshotID{b.ID}); err != nil {
		t.Fatal(err)
	}
	if freed, err := agent.FreesData(l, []*repo.Snapshot{a, b}); err != nil || !freed {
		t.Errorf("forgetting the last snapshots of a tree: freed %v, %v", freed, err)
	}
}

// Two sessions may store the same blob (in fleet mode a condemned blob is
// answered as unseen, so it is uploaded again). When the index points at
// the copy in a pack the collection did not plan, the pack of the other
// copy holds nothing the index calls live. If an index object the
// collection does not replace still describes that pack, deleting it
// leaves the bucket describing a pack that is gone, and a later sync may
// point the blob back at it.
func TestGCKeepsPacksOfIndexObjectsItDoesNotReplace(t *testing.T) {
	ctx := context.Background()
	hook := &listHook{Store: mem.New()}
	l, _ := gcRaceSetup(t, hook)
	src := filepath.Join(t.TempDir(), "dup")
	writeState(t, src, 200)
	backup := func(o *agent.Local, commit func(context.Context, *repo.Snapshot) (repo.SnapshotID, error)) *repo.Snapshot {
		sn, err := agent.Backup(ctx, o.Repo, o.Index, agent.BackupOptions{Node: "dup", Path: src, Commit: commit})
		if err != nil {
			t.Fatalf("backup during gc: %v", err)
		}
		return sn
	}
	// The first copy lands after the collection listed the index objects
	// it replaces, and before its sync, which reads it.
	// Opened now, the second writer's index will not know the first's
	// blobs, so it stores them again.
	dup := openLocal(t, hook, t.TempDir())
	var first *repo.Snapshot
	hook.arm("index/", 1, func() { first = backup(openLocal(t, hook, t.TempDir()), nil) })
	_, err := agent.GC(ctx, l, agent.GCOptions{
		Condemn: func(func(agent.BlobRef) bool) (agent.Roots, error) {
			// The second copy is committed once marking is done, as a
			// coordinator's commit adds its session's packs.
			backup(dup, func(context.Context, *repo.Snapshot) (repo.SnapshotID, error) { return "pending", nil })
			return agent.Roots{}, l.Index.AddPacks(indexedPacks(t, dup))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if first == nil {
		t.Fatal("the first writer never ran")
	}
	restoresFromScratch(t, hook, first, src)
}

// indexedPacks is what o's index says its packs hold.
func indexedPacks(t *testing.T, o *agent.Local) []repo.PackInfo {
	t.Helper()
	byPack := map[repo.PackID]*repo.PackInfo{}
	packs, err := o.Index.Packs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packs {
		byPack[p.ID] = &repo.PackInfo{ID: p.ID, Size: p.Size}
	}
	err = o.Index.EachBlob(func(loc index.Location) error {
		if p := byPack[loc.Pack]; p != nil {
			p.Blobs = append(p.Blobs, loc.Entry)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]repo.PackInfo, 0, len(byPack))
	for _, p := range byPack {
		out = append(out, *p)
	}
	return out
}
