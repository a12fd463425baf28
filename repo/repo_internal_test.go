package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/chunk"
)

var fastKDF = KDFParams{Time: 1, Memory: 64, Threads: 1}

// memStore is a minimal in-package store so these tests need not import
// repo/mem (which imports repo). Uploaders put packs concurrently.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Put(_ context.Context, n string, d []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[n] = append([]byte(nil), d...)
	return nil
}
func (s *memStore) Get(_ context.Context, n string, off, l int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[n]
	if !ok {
		return nil, ErrNotFound
	}
	if l < 0 {
		l = int64(len(d)) - off
	}
	if off+l > int64(len(d)) {
		return nil, errors.New("range")
	}
	return append([]byte(nil), d[off:off+l]...), nil
}
func (s *memStore) Stat(_ context.Context, n string) (ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[n]
	if !ok {
		return ObjectInfo{}, ErrNotFound
	}
	return ObjectInfo{Name: n, Size: int64(len(d))}, nil
}
func (s *memStore) List(_ context.Context, p string, fn func(ObjectInfo) error) error {
	s.mu.Lock()
	var found []ObjectInfo
	for n, d := range s.m {
		if strings.HasPrefix(n, p) {
			found = append(found, ObjectInfo{Name: n, Size: int64(len(d))})
		}
	}
	s.mu.Unlock()
	for _, oi := range found {
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}
func (s *memStore) Delete(_ context.Context, n string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[n]; !ok {
		return ErrNotFound
	}
	delete(s.m, n)
	return nil
}

func testParams() *chunk.Params {
	return &chunk.Params{Polynomial: chunker.Pol(0x3DA3358B4DC173), MinSize: 512 << 10, MaxSize: 8 << 20, AverageBits: 20, IDKey: make([]byte, 32)}
}

func testRepository(t testing.TB) *Repository {
	t.Helper()
	r, err := Init(context.Background(), &memStore{m: map[string][]byte{}}, "pw", InitOptions{KDF: fastKDF, Chunker: testParams(), PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInitOpenPasswords(t *testing.T) {
	ctx := context.Background()
	st := &memStore{m: map[string][]byte{}}
	if _, err := Open(ctx, st, "pw"); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("open empty store: %v, want ErrNoRepository", err)
	}
	r, err := Init(ctx, st, "pw", InitOptions{KDF: fastKDF})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, st, "pw", InitOptions{KDF: fastKDF}); !errors.Is(err, ErrRepositoryExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := Open(ctx, st, "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	r2, err := Open(ctx, st, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Config().ID != r.Config().ID || r2.Config().Chunker.Polynomial != r.Config().Chunker.Polynomial {
		t.Fatal("reopened config differs")
	}
	// A tampered config is refused as corrupt.
	st.m["config"][len(st.m["config"])-1] ^= 1
	if _, err := Open(ctx, st, "pw"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered config: %v, want ErrCorrupt", err)
	}
}

func TestBlobSealOpen(t *testing.T) {
	r := testRepository(t)
	rnd := rand.New(rand.NewPCG(1, 1))
	random := make([]byte, 100000)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	cases := []struct {
		name  string
		plain []byte
	}{
		{"empty", nil},
		{"one byte", []byte{7}},
		{"compressible", bytes.Repeat([]byte("abc"), 100000)},
		{"random", random},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := r.hasher.Sum(c.plain)
			sealed := r.sealBlob(nil, DataBlob, id, c.plain)
			got, err := r.openBlob(DataBlob, id, sealed, len(c.plain))
			if err != nil || !bytes.Equal(got, c.plain) {
				t.Fatalf("open: %v", err)
			}
			if len(c.plain) > 1000 && c.name == "compressible" && len(sealed) > len(c.plain)/10 {
				t.Errorf("compressible blob sealed to %d bytes", len(sealed))
			}
			// Bound to type and ID: the store cannot swap blobs.
			if _, err := r.openBlob(TreeBlob, id, sealed, len(c.plain)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("opened as another type: %v", err)
			}
			other := r.hasher.Sum([]byte("other"))
			if _, err := r.openBlob(DataBlob, other, sealed, len(c.plain)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("opened under another ID: %v", err)
			}
			for _, pos := range []int{0, len(sealed) / 2, len(sealed) - 1} {
				bad := append([]byte(nil), sealed...)
				bad[pos] ^= 0x80
				if _, err := r.openBlob(DataBlob, id, bad, len(c.plain)); !errors.Is(err, ErrCorrupt) {
					t.Errorf("flipped byte %d accepted: %v", pos, err)
				}
			}
		})
	}
}

func TestUploaderPacksAndHeaders(t *testing.T) {
	ctx := context.Background()
	r := testRepository(t)
	rnd := rand.New(rand.NewPCG(2, 2))
	want := map[chunk.ID][]byte{}
	collected, onPack := packCollector()
	stats, err := r.WithUploader(ctx, UploadOptions{OnPack: onPack}, func(ctx context.Context, up *Uploader) error {
		for i := range 40 {
			b := make([]byte, 50000+i)
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			id := r.hasher.Sum(b)
			want[id] = b
			if _, err := up.Add(ctx, DataBlob, id, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	packs := *collected
	if stats.Blobs != 40 || len(packs) < 2 {
		t.Fatalf("stats %+v, %d packs; want 40 blobs in 2+ packs of 1 MiB", stats, len(packs))
	}
	names, err := r.ListIndexNames(ctx)
	if err != nil || len(names) != 1 {
		t.Fatalf("index objects: %v %v", names, err)
	}
	fromIndex, err := r.ReadIndex(ctx, names[0].Name)
	if err != nil || len(fromIndex) != len(packs) {
		t.Fatalf("read index: %d packs, %v", len(fromIndex), err)
	}
	seen := 0
	for _, p := range packs {
		hdr, err := r.ReadPackHeader(ctx, p.ID, p.Size)
		if err != nil {
			t.Fatal(err)
		}
		if len(hdr) != len(p.Blobs) {
			t.Fatalf("pack %s header has %d blobs, info %d", p.ID.Short(), len(hdr), len(p.Blobs))
		}
		if _, err := r.ReadPack(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		err = r.ReadBlobs(ctx, p.ID, hdr, func(e BlobEntry, plain []byte) error {
			if !bytes.Equal(plain, want[e.ID]) {
				t.Errorf("blob %s differs", e.ID.Short())
			}
			seen++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen != 40 {
		t.Fatalf("read back %d blobs", seen)
	}
}

// failingStore fails every pack upload.
type failingStore struct{ *memStore }

var errBoom = errors.New("boom")

func (f failingStore) Put(ctx context.Context, n string, d []byte) error {
	if strings.HasPrefix(n, "data/") {
		return errBoom
	}
	return f.memStore.Put(ctx, n, d)
}

func TestUploaderFailureWritesNoIndex(t *testing.T) {
	ctx := context.Background()
	ms := &memStore{m: map[string][]byte{}}
	r, err := Init(ctx, ms, "pw", InitOptions{KDF: fastKDF, Chunker: testParams(), PackSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	r.store = failingStore{ms}
	_, err = r.WithUploader(ctx, UploadOptions{}, func(ctx context.Context, up *Uploader) error {
		for i := range 100 {
			b := bytes.Repeat([]byte{byte(i)}, 70000)
			if _, err := up.Add(ctx, DataBlob, r.hasher.Sum(b), b); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("upload failure: %v, want the store's error", err)
	}
	for n := range ms.m {
		if strings.HasPrefix(n, "index/") || strings.HasPrefix(n, "data/") {
			t.Errorf("%s written despite the failure", n)
		}
	}
}

func TestTreeDecodeRejectsHostileNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "/abs", "nul\x00"} {
		tr := Tree{Nodes: []Node{{Name: name, Type: NodeFifo}}}
		if _, err := DecodeTree(tr.Encode()); !errors.Is(err, ErrCorrupt) {
			t.Errorf("name %q accepted: %v", name, err)
		}
	}
	dup := Tree{Nodes: []Node{{Name: "a", Type: NodeFifo}, {Name: "a", Type: NodeFifo}}}
	if _, err := DecodeTree(dup.Encode()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("duplicate names accepted: %v", err)
	}
	unsorted := Tree{Nodes: []Node{{Name: "b", Type: NodeFifo}, {Name: "a", Type: NodeFifo}}}
	if _, err := DecodeTree(unsorted.Encode()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unsorted names accepted: %v", err)
	}
}

// countingStore counts reads, to see what the tree cache saves.
type countingStore struct {
	*memStore
	gets, stats int
}

func (c *countingStore) Get(ctx context.Context, n string, off, l int64) ([]byte, error) {
	c.memStore.mu.Lock()
	c.gets++
	c.memStore.mu.Unlock()
	return c.memStore.Get(ctx, n, off, l)
}

func (c *countingStore) Stat(ctx context.Context, n string) (ObjectInfo, error) {
	c.memStore.mu.Lock()
	c.stats++
	c.memStore.mu.Unlock()
	return c.memStore.Stat(ctx, n)
}

// Walking many trees of one pack reads a few by range, then the pack once;
// a flipped byte in the cached pack is still caught.
func TestLoadTreeCachesBusyTreePacks(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{memStore: &memStore{m: map[string][]byte{}}}
	r, err := Init(ctx, st, "pw", InitOptions{KDF: fastKDF, Chunker: testParams()})
	if err != nil {
		t.Fatal(err)
	}
	var trees []*Tree
	collected, onPack := packCollector()
	_, err = r.WithUploader(ctx, UploadOptions{OnPack: onPack}, func(ctx context.Context, up *Uploader) error {
		for i := range 20 {
			tr := &Tree{Nodes: []Node{{Name: fmt.Sprintf("file%02d", i), Type: NodeFile, Size: uint64(i)}}}
			trees = append(trees, tr)
			data := tr.Encode()
			if _, err := up.Add(ctx, TreeBlob, r.hasher.Sum(data), data); err != nil {
				return err
			}
		}
		return nil
	})
	packs := *collected
	if err != nil || len(packs) != 1 {
		t.Fatalf("%d packs, %v", len(packs), err)
	}
	pack := packs[0]
	st.gets, st.stats = 0, 0
	for round := range 2 {
		for _, e := range pack.Blobs {
			tr, err := r.LoadTree(ctx, pack.ID, e)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Nodes) != 1 {
				t.Fatalf("round %d: tree %s decoded to %d nodes", round, e.ID.Short(), len(tr.Nodes))
			}
		}
	}
	// treePackMisses-1 range reads, then one Stat and one whole read.
	if st.gets != treePackMisses || st.stats != 1 {
		t.Errorf("40 tree loads from one pack: %d gets, %d stats; want %d and 1", st.gets, st.stats, treePackMisses)
	}
	// The cached copy is verified like a fresh read: damaged, it is
	// dropped and the store's copy is read.
	r.trees.mu.Lock()
	r.trees.packs[pack.ID].data[pack.Blobs[0].Offset+20] ^= 1
	r.trees.mu.Unlock()
	st.gets = 0
	if _, err := r.LoadTree(ctx, pack.ID, pack.Blobs[0]); err != nil || st.gets != 1 {
		t.Errorf("flipped byte in a cached tree pack: %v after %d gets, want the store's copy", err, st.gets)
	}
	// A damaged stored pack is reported, cache or not.
	name := pack.ID.ObjectName()
	st.memStore.m[name][pack.Blobs[1].Offset+20] ^= 1
	r.ForgetPacks(pack.ID)
	for range treePackMisses + 1 {
		if _, err := r.LoadTree(ctx, pack.ID, pack.Blobs[1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped byte in a stored tree pack: %v, want ErrCorrupt", err)
		}
	}
}

// slowStore takes a while for every pack, so savers outrun uploaders.
type slowStore struct{ *memStore }

func (s slowStore) Put(ctx context.Context, n string, d []byte) error {
	if strings.HasPrefix(n, "data/") {
		time.Sleep(20 * time.Millisecond)
	}
	return s.memStore.Put(ctx, n, d)
}

// Savers that outrun the uploads wait for an arena instead of making
// more: pack memory stays at Uploaders + 1 data arenas, and every blob
// still lands.
func TestUploaderBoundsArenas(t *testing.T) {
	for _, c := range []struct {
		uploaders, savers, blobSize int
	}{
		{1, 4, 100 << 10},
		{2, 4, 100 << 10},
		{1, 3, 3 << 20}, // blobs larger than a pack
	} {
		t.Run(fmt.Sprintf("%d uploaders %d savers %d bytes", c.uploaders, c.savers, c.blobSize), func(t *testing.T) {
			ctx := context.Background()
			r := testRepository(t)
			ms := &memStore{m: map[string][]byte{}}
			r.store = slowStore{ms}
			var up *Uploader
			stats, err := r.WithUploader(ctx, UploadOptions{Uploaders: c.uploaders}, func(ctx context.Context, u *Uploader) error {
				up = u
				g, ctx := errgroup.WithContext(ctx)
				for s := range c.savers {
					g.Go(func() error {
						rnd := rand.New(rand.NewPCG(uint64(s), 7))
						b := make([]byte, c.blobSize)
						for j := range b {
							b[j] = byte(rnd.Uint32())
						}
						for i := range 12 {
							b[0], b[1] = byte(s), byte(i) // distinct blobs
							if _, err := u.Add(ctx, DataBlob, r.hasher.Sum(b), b); err != nil {
								return err
							}
						}
						return nil
					})
				}
				return g.Wait()
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(12 * c.savers); stats.Blobs != want {
				t.Fatalf("%d blobs stored, want %d", stats.Blobs, want)
			}
			up.mu.Lock()
			made := up.peakMade
			up.mu.Unlock()
			if made > c.uploaders+1 {
				t.Errorf("%d data arenas made, at most %d allowed", made, c.uploaders+1)
			}
		})
	}
}

// packCollector returns an OnPack that collects every pack a session
// stores, and where they go.
func packCollector() (*[]PackInfo, func(PackInfo) error) {
	var mu sync.Mutex
	var packs []PackInfo
	return &packs, func(p PackInfo) error {
		mu.Lock()
		defer mu.Unlock()
		packs = append(packs, p)
		return nil
	}
}
