package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// Landed packs go to the spill file an index object's worth at a time,
// grouped as WriteIndexes groups them, and come back as the same index
// objects; the file is never visible in its folder.
func TestIndexSpill(t *testing.T) {
	ctx := context.Background()
	r := testRepository(t)
	dir := t.TempDir()
	s := &indexSpill{dir: dir}
	defer s.close()
	packs := fakePacks(40000, 20000, 30000, 30000, 80000)
	for _, p := range packs {
		if err := s.add(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.groups) != 2 || len(s.pending) != 1 {
		t.Fatalf("%d groups spilled, %d packs pending; want 2 (40k+20k, 30k+30k) and the 80k one", len(s.groups), len(s.pending))
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("spill folder holds %v (%v); want nothing", entries, err)
	}
	objs, err := s.write(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("%d index objects, want 3", len(objs))
	}
	want := map[PackID]PackInfo{}
	for _, p := range packs {
		want[p.ID] = p
	}
	for _, o := range objs {
		back, err := r.ReadIndex(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(o.Packs) {
			t.Fatalf("%s holds %d packs, the session says %d", o.Name, len(back), len(o.Packs))
		}
		for i, p := range back {
			w, ok := want[p.ID]
			if !ok || p.ID != o.Packs[i] || len(p.Blobs) != len(w.Blobs) || p.Blobs[len(p.Blobs)-1] != w.Blobs[len(w.Blobs)-1] {
				t.Fatalf("%s pack %d differs from what was added", o.Name, i)
			}
			delete(want, p.ID)
		}
	}
	if len(want) != 0 {
		t.Errorf("%d packs described by no index object", len(want))
	}
}

// A spill file changed on disk is an error, not an index object that
// misdescribes packs.
func TestIndexSpillReadBackChanged(t *testing.T) {
	r := testRepository(t)
	s := &indexSpill{dir: t.TempDir()}
	defer s.close()
	for _, p := range fakePacks(60000, 60000) {
		if err := s.add(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.f.WriteAt([]byte{0xff}, 100); err != nil {
		t.Fatal(err)
	}
	_, err := s.write(context.Background(), r)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "index spill") {
		t.Fatalf("write after the spill changed: %v; want ErrCorrupt naming the spill", err)
	}
	names, _ := r.ListIndexNames(context.Background())
	if len(names) != 0 {
		t.Errorf("%d index objects written from a changed spill", len(names))
	}
}

// A whole session of more blobs than one index object takes: every pack
// it stored is described once, by objects written only at its end.
func TestUploaderSpillsLargeSessions(t *testing.T) {
	ctx := context.Background()
	r := testRepository(t)
	const blobs = indexObjectBlobs + 5000
	collected, onPack := packCollector()
	var before int
	stats, err := r.WithUploader(ctx, UploadOptions{OnPack: onPack, SpillDir: t.TempDir()}, func(ctx context.Context, up *Uploader) error {
		var b [8]byte
		for i := range blobs {
			binary.LittleEndian.PutUint64(b[:], uint64(i))
			if _, err := up.Add(ctx, DataBlob, r.hasher.Sum(b[:]), b[:]); err != nil {
				return err
			}
		}
		names, err := r.ListIndexNames(ctx)
		before = len(names)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if before != 0 {
		t.Errorf("%d index objects in the store before the session ended", before)
	}
	if len(stats.IndexObjects) < 2 {
		t.Fatalf("%d index objects for %d blobs, want 2 or more", len(stats.IndexObjects), blobs)
	}
	described := map[PackID]int{}
	entries := 0
	for _, o := range stats.IndexObjects {
		back, err := r.ReadIndex(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range back {
			described[p.ID]++
			entries += len(p.Blobs)
		}
	}
	for _, p := range *collected {
		if described[p.ID] != 1 {
			t.Errorf("pack %s described %d times", p.ID.Short(), described[p.ID])
		}
	}
	if entries != blobs || len(described) != len(*collected) {
		t.Errorf("index objects describe %d blobs in %d packs; the session stored %d in %d", entries, len(described), blobs, len(*collected))
	}
}
