package index_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
)

func testRepo(t *testing.T) (*repo.Repository, *mem.Store) {
	t.Helper()
	st := mem.New()
	p := &chunk.Params{Polynomial: chunker.Pol(0x3DA3358B4DC173), MinSize: 512 << 10, MaxSize: 8 << 20, AverageBits: 20, IDKey: make([]byte, 32)}
	r, err := repo.Init(context.Background(), st, "pw", repo.InitOptions{KDF: repo.KDFParams{Time: 1, Memory: 64, Threads: 1}, Chunker: p})
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// writeBlobs stores blobs in one upload session and returns their IDs.
// openIndex opens a fresh index for r, closed when the test ends.
func openIndex(t *testing.T, r *repo.Repository) *index.Index {
	t.Helper()
	ix, err := index.Open(t.TempDir(), r.Config().ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func writeBlobs(t *testing.T, r *repo.Repository, contents ...string) []chunk.ID {
	t.Helper()
	var ids []chunk.ID
	_, err := r.WithUploader(context.Background(), repo.UploadOptions{}, func(ctx context.Context, up *repo.Uploader) error {
		for _, c := range contents {
			id := r.Hasher().Sum([]byte(c))
			ids = append(ids, id)
			if _, err := up.Add(ctx, repo.DataBlob, id, []byte(c)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func saveSnapshot(t *testing.T, r *repo.Repository, node string) *repo.Snapshot {
	t.Helper()
	sn := &repo.Snapshot{Time: time.Now(), Node: node, Path: "/p", Tree: chunk.ID{1}}
	if err := r.SaveSnapshot(context.Background(), sn); err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestSyncIsIncrementalAndFollowsTheBucket(t *testing.T) {
	ctx := context.Background()
	r, st := testRepo(t)
	ix := openIndex(t, r)

	a := writeBlobs(t, r, "one", "two")
	s1 := saveSnapshot(t, r, "n1")
	stats, err := ix.Sync(ctx, r)
	if err != nil || stats.IndexObjects != 1 || stats.SnapshotsAdded != 1 {
		t.Fatalf("first sync: %+v %v", stats, err)
	}
	for _, id := range a {
		if ok, _ := ix.Has(repo.DataBlob, id); !ok {
			t.Fatalf("blob %s not indexed", id.Short())
		}
	}
	// Nothing new: nothing read.
	stats, err = ix.Sync(ctx, r)
	if err != nil || stats.IndexObjects != 0 || stats.SnapshotsAdded != 0 || stats.Reloaded {
		t.Fatalf("idle sync: %+v %v", stats, err)
	}
	b := writeBlobs(t, r, "three")
	saveSnapshot(t, r, "n2")
	stats, _ = ix.Sync(ctx, r)
	if stats.IndexObjects != 1 || stats.SnapshotsAdded != 1 {
		t.Fatalf("incremental sync: %+v", stats)
	}
	// A snapshot deleted elsewhere leaves the catalog.
	if err := r.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	// An index object rewritten elsewhere (as garbage collection does)
	// makes the index reload every location.
	var first string
	st.List(ctx, "index/", func(oi repo.ObjectInfo) error {
		if first == "" {
			first = oi.Name
		}
		return nil
	})
	if err := st.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	stats, _ = ix.Sync(ctx, r)
	if !stats.Reloaded || stats.Snapshots != 1 {
		t.Fatalf("sync after deletions: %+v", stats)
	}
	sns, _ := ix.Snapshots()
	if len(sns) != 1 || sns[0].Node != "n2" {
		t.Fatalf("catalog after deletion: %v", sns)
	}
	// Exactly one of the two sessions' blobs survive the reload.
	hasA, _ := ix.Has(repo.DataBlob, a[0])
	hasB, _ := ix.Has(repo.DataBlob, b[0])
	if hasA == hasB {
		t.Fatalf("after reload: first session indexed %v, second %v; want exactly one", hasA, hasB)
	}
}

func TestRebuildReadsPacksWithoutIndexObjects(t *testing.T) {
	ctx := context.Background()
	r, st := testRepo(t)
	ids := writeBlobs(t, r, "alpha", "beta")
	saveSnapshot(t, r, "n")
	// Lose every index object: only the packs' own tables remain.
	var names []string
	st.List(ctx, "index/", func(oi repo.ObjectInfo) error { names = append(names, oi.Name); return nil })
	for _, n := range names {
		st.Delete(ctx, n)
	}
	ix := openIndex(t, r)
	stats, err := ix.Rebuild(ctx, r)
	if err != nil || stats.PacksScanned != 1 || stats.Snapshots != 1 || len(stats.Problems) != 0 {
		t.Fatalf("rebuild: %+v %v", stats, err)
	}
	for _, id := range ids {
		loc, ok, err := ix.Lookup(repo.DataBlob, id)
		if err != nil || !ok {
			t.Fatalf("blob %s after rebuild: %v %v", id.Short(), ok, err)
		}
		if _, err := r.ReadBlob(ctx, loc.Pack, loc.Entry); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	ix, err := index.Open(dir, "repo-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := index.Open(dir, "repo-a"); !errors.Is(err, index.ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}
	ix.Close()
	if _, err := index.Open(dir, "repo-b"); err == nil || !strings.Contains(err.Error(), "belongs to repository repo-a") {
		t.Errorf("open for another repository: %v", err)
	}
}

// A process killed at the wrong moment leaves an index Badger cannot open.
// An empty memtable is cleared away keeping the data; anything worse moves
// the index aside and starts afresh, since the bucket can refill it.
func TestOpenRecoversFromCrashLeftovers(t *testing.T) {
	tests := []struct {
		name      string
		damage    func(t *testing.T, dir string)
		keepsData bool
	}{
		{"empty memtable", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"garbage manifest", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("not a manifest"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ix")
			ix, err := index.Open(dir, "repo-a")
			if err != nil {
				t.Fatal(err)
			}
			pack := repo.PackInfo{ID: repo.PackID{7}, Size: 100, Blobs: []repo.BlobEntry{{Type: repo.DataBlob, ID: chunk.ID{9}, Length: 50}}}
			if err := ix.AddPacks([]repo.PackInfo{pack}); err != nil {
				t.Fatal(err)
			}
			ix.Close()
			tt.damage(t, dir)

			ix, err = index.Open(dir, "repo-a")
			if err != nil {
				t.Fatalf("open after damage: %v", err)
			}
			defer ix.Close()
			has, err := ix.Has(repo.DataBlob, chunk.ID{9})
			if err != nil {
				t.Fatal(err)
			}
			if has != tt.keepsData {
				t.Errorf("blob indexed after reopening: %v, want %v", has, tt.keepsData)
			}
			if got := ix.Recovered() != nil; got == tt.keepsData {
				t.Errorf("Recovered() = %v", ix.Recovered())
			}
			_, err = os.Stat(dir + ".damaged")
			if moved := err == nil; moved == tt.keepsData {
				t.Errorf("damaged index moved aside: %v, want %v", moved, !tt.keepsData)
			}
		})
	}
}

// The index remembers which packs each index object it read describes, so
// garbage collection knows what the objects it replaces cover without
// reading them again; an object it never read is unknown.
func TestIndexObjectPacks(t *testing.T) {
	ctx := context.Background()
	r, _ := testRepo(t)
	ix := openIndex(t, r)
	writeBlobs(t, r, "one", "two")
	objs, err := r.ListIndexNames(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("index objects: %v %v", objs, err)
	}
	name := objs[0].Name
	if _, ok, err := ix.IndexObjectPacks(name); ok || err != nil {
		t.Fatalf("before sync: known %v, %v", ok, err)
	}
	if _, err := ix.Sync(ctx, r); err != nil {
		t.Fatal(err)
	}
	want, err := r.ReadIndex(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := ix.IndexObjectPacks(name)
	if err != nil || !ok || len(got) != len(want) {
		t.Fatalf("after sync: %v %v %v, want %d packs", got, ok, err, len(want))
	}
	for i := range want {
		if got[i] != want[i].ID {
			t.Errorf("pack %d: %s, want %s", i, got[i].Short(), want[i].ID.Short())
		}
	}
	// Noted by an older cairn: no packs recorded, so not known.
	if err := ix.NoteIndexObject("index/old", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ix.IndexObjectPacks("index/old"); ok || err != nil {
		t.Errorf("noted without packs: known %v, %v", ok, err)
	}
}

// Blob entries name their pack by a ref. Refs given before a reopen stay
// valid after it and new packs never take one of them, and a pack entry
// deleted by a reload and added again resolves as before.
func TestPackRefsSurviveReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ix")
	pack := func(b byte, blobs int) repo.PackInfo {
		p := repo.PackInfo{ID: repo.PackID{b, 0xee}, Size: 1 << 20}
		for i := range blobs {
			p.Blobs = append(p.Blobs, repo.BlobEntry{Type: repo.DataBlob, ID: chunk.ID{b, byte(i)}, Offset: uint32(i) * 70000, Length: 70000, RawLength: 1 << 17})
		}
		return p
	}
	check := func(ix *index.Index, ps ...repo.PackInfo) {
		t.Helper()
		for _, p := range ps {
			for _, e := range p.Blobs {
				loc, ok, err := ix.Lookup(e.Type, e.ID)
				if err != nil || !ok || loc.Pack != p.ID || loc.Entry != e {
					t.Fatalf("lookup %x: %+v %v %v; want %x %+v", e.ID[:2], loc, ok, err, p.ID[:2], e)
				}
			}
		}
	}
	ix, err := index.Open(dir, "repo-a")
	if err != nil {
		t.Fatal(err)
	}
	a, b := pack(1, 3), pack(2, 200)
	if err := ix.AddPacks([]repo.PackInfo{a, b}); err != nil {
		t.Fatal(err)
	}
	check(ix, a, b)
	ix.Close()

	ix, err = index.Open(dir, "repo-a")
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	c := pack(3, 5)
	if err := ix.AddPacks([]repo.PackInfo{c, a}); err != nil { // a again: same ref
		t.Fatal(err)
	}
	check(ix, a, b, c)
	var blobs int
	if err := ix.EachBlob(func(loc index.Location) error { blobs++; return nil }); err != nil || blobs != 208 {
		t.Fatalf("EachBlob: %d blobs, %v; want 208", blobs, err)
	}
	packs, err := ix.Packs()
	if err != nil || len(packs) != 3 {
		t.Fatalf("Packs: %+v %v", packs, err)
	}
}

// An index written by an older cairn, with pack IDs in its blob entries,
// is emptied when opened and refilled from the bucket by Sync.
func TestOldIndexFormatIsRefilled(t *testing.T) {
	r, _ := testRepo(t)
	ids := writeBlobs(t, r, "one", "two")
	dir := filepath.Join(t.TempDir(), "ix")
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte("mrepo"), []byte(r.Config().ID)); err != nil {
			return err
		}
		old := make([]byte, 44) // pack ID, offset, length, raw length
		return txn.Set(append([]byte{'b', byte(repo.DataBlob)}, ids[0][:]...), old)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	ix, err := index.Open(dir, r.Config().ID)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if has, err := ix.Has(repo.DataBlob, ids[0]); err != nil || has {
		t.Fatalf("old entry after open: %v %v; want gone", has, err)
	}
	if _, err := ix.Sync(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, ok, err := ix.Lookup(repo.DataBlob, id); err != nil || !ok {
			t.Fatalf("lookup after sync: %v %v", ok, err)
		}
	}
}

// LookupMany answers like Lookup for each ID, in order, misses included,
// and stops at the first error its callback returns.
func TestLookupMany(t *testing.T) {
	ix, err := index.Open(t.TempDir(), "repo-a")
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	p := repo.PackInfo{ID: repo.PackID{7}, Size: 1 << 20}
	for i := range 4 {
		p.Blobs = append(p.Blobs, repo.BlobEntry{Type: repo.DataBlob, ID: chunk.ID{byte(i + 1)}, Offset: uint32(i) * 100, Length: 100, RawLength: 200})
	}
	if err := ix.AddPacks([]repo.PackInfo{p}); err != nil {
		t.Fatal(err)
	}
	missing := chunk.ID{0xff}
	stop := errors.New("stop")
	tests := []struct {
		name    string
		ids     []chunk.ID
		stopAt  int // the callback fails at this call; -1 never
		want    []bool
		wantErr error
	}{
		{"all found", []chunk.ID{{3}, {1}, {4}}, -1, []bool{true, true, true}, nil},
		{"a miss in the middle", []chunk.ID{{2}, missing, {1}}, -1, []bool{true, false, true}, nil},
		{"same id twice", []chunk.ID{{2}, {2}}, -1, []bool{true, true}, nil},
		{"none", nil, -1, nil, nil},
		{"callback error stops", []chunk.ID{{1}, {2}, {3}}, 1, []bool{true, true}, stop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []bool
			err := ix.LookupMany(repo.DataBlob, tc.ids, func(i int, loc index.Location, found bool) error {
				if i != len(got) {
					t.Fatalf("call for id %d, want %d", i, len(got))
				}
				got = append(got, found)
				one, ok, err := ix.Lookup(repo.DataBlob, tc.ids[i])
				if err != nil || ok != found || one != loc {
					t.Errorf("id %x: LookupMany %+v %v, Lookup %+v %v %v", tc.ids[i][:1], loc, found, one, ok, err)
				}
				if i == tc.stopAt {
					return stop
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("found %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("found %v, want %v", got, tc.want)
				}
			}
		})
	}
	// A tree type is looked up under its own key space.
	if err := ix.LookupMany(repo.TreeBlob, []chunk.ID{{1}}, func(_ int, _ index.Location, found bool) error {
		if found {
			t.Error("data blob found as a tree")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
