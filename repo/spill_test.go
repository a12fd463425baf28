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
	checkIndexObjects(t, r, objs, packs)
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
	entries := 0
	for _, p := range *collected {
		entries += len(p.Blobs)
	}
	if entries != blobs {
		t.Errorf("the session stored %d blobs in its packs, want %d", entries, blobs)
	}
	checkIndexObjects(t, r, stats.IndexObjects, *collected)
}
