package repo

import (
	"context"
	"math/rand/v2"
	"testing"
)

func TestArenaPool(t *testing.T) {
	var p arenaPool
	a := p.get(1 << 20)
	if len(a) != 0 || cap(a) < 1<<20 {
		t.Fatalf("get(1 MiB): len %d cap %d", len(a), cap(a))
	}
	a = a[:cap(a)]
	for i := range a {
		a[i] = 0xAA
	}
	p.put(a[:0])
	b := p.get(512 << 10)
	if len(b) != 0 || cap(b) < 512<<10 {
		t.Fatalf("get(512 KiB): len %d cap %d", len(b), cap(b))
	}
	if arenasMapped {
		// Taken back, released to the system and handed out again.
		if &b[:1][0] != &a[0] {
			t.Fatal("the pool mapped a new arena instead of reusing the free one")
		}
		for i, c := range b[:cap(b)] {
			if c != 0 {
				t.Fatalf("byte %d of a released arena is %#x: its memory was not given back", i, c)
			}
		}
		if c := p.get(2 << 20); cap(c) < 2<<20 || &c[:1][0] == &a[0] {
			t.Fatalf("get(2 MiB) with only a 1 MiB arena free: cap %d, same arena %v", cap(c), &c[:1][0] == &a[0])
		}
	}
}

// An upload session hands its data arenas to the next one, whether it
// succeeded or failed, so a daemon running backup after backup keeps a
// bounded set of them.
func TestUploaderReturnsArenas(t *testing.T) {
	ctx := context.Background()
	r := testRepository(t)
	ms := &memStore{m: map[string][]byte{}}
	blob := make([]byte, 300<<10)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range blob {
		blob[i] = byte(rnd.Uint32())
	}
	session := func() (int, error) {
		var up *Uploader
		_, err := r.WithUploader(ctx, UploadOptions{Uploaders: 1}, func(ctx context.Context, u *Uploader) error {
			up = u
			for i := range 8 {
				blob[0] = byte(i)
				if _, err := u.Add(ctx, DataBlob, r.hasher.Sum(blob), blob); err != nil {
					return err
				}
			}
			return nil
		})
		if up.owned != nil {
			t.Errorf("session ended holding %d arenas", len(up.owned))
		}
		return up.peakMade, err
	}
	packArenas.mu.Lock()
	before := len(packArenas.free)
	packArenas.mu.Unlock()
	for i, c := range []struct {
		store   Store
		wantErr bool
	}{
		{ms, false},
		{failingStore{ms}, true},
		{ms, false},
	} {
		r.store = c.store
		made, err := session()
		if (err != nil) != c.wantErr {
			t.Fatalf("session %d: error %v, want one: %v", i, err, c.wantErr)
		}
		if made == 0 {
			t.Fatalf("session %d made no data arena", i)
		}
		packArenas.mu.Lock()
		free := len(packArenas.free)
		packArenas.mu.Unlock()
		// Every arena free before is at least a pack's size, so the
		// session takes its arenas from them and maps only what it lacks.
		if want := max(before, made); arenasMapped && free != want {
			t.Errorf("session %d made %d arenas: %d free after it, want %d", i, made, free, want)
		}
		before = free
	}
}
