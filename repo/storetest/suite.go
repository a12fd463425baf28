package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/repo"
)

// Suite runs the conformance tests against the empty store newStore returns.
func Suite(t *testing.T, newStore func(t *testing.T) repo.Store) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(1, 2))
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}

	t.Run("PutGetStat", func(t *testing.T) {
		s := newStore(t)
		for _, n := range []int{0, 1, 4096, 3<<20 + 7} {
			name := fmt.Sprintf("data/ab/obj%d", n)
			want := payload(n)
			if err := s.Put(ctx, name, want); err != nil {
				t.Fatalf("put %d bytes: %v", n, err)
			}
			got, err := s.Get(ctx, name, 0, -1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("get %s: %d bytes, err %v; want %d bytes", name, len(got), err, n)
			}
			fi, err := s.Stat(ctx, name)
			if err != nil || fi.Size != int64(n) || fi.Name != name {
				t.Fatalf("stat %s = %+v, %v", name, fi, err)
			}
		}
	})

	// Packs are written from their pieces (repo.PutPieces): the object
	// must hold exactly the joined bytes, whatever the pieces look like.
	t.Run("PutPieces", func(t *testing.T) {
		s := newStore(t)
		many := make(repo.Pieces, 3000) // more than one writev takes
		for i := range many {
			many[i] = payload(i % 97)
		}
		cases := []struct {
			name   string
			pieces repo.Pieces
		}{
			{"none", nil},
			{"only empty", repo.Pieces{{}, nil, {}}},
			{"one", repo.Pieces{payload(5000)}},
			{"empty between", repo.Pieces{payload(10), {}, payload(1 << 20), nil, payload(3)}},
			{"many small", many},
		}
		for i, c := range cases {
			name := fmt.Sprintf("data/cd/pieces%d", i)
			if err := repo.PutPieces(ctx, s, name, c.pieces); err != nil {
				t.Fatalf("%s: put: %v", c.name, err)
			}
			got, err := s.Get(ctx, name, 0, -1)
			if err != nil || !bytes.Equal(got, c.pieces.Join()) {
				t.Fatalf("%s: got %d bytes, err %v; want %d bytes", c.name, len(got), err, c.pieces.Len())
			}
		}
	})

	t.Run("RangeReads", func(t *testing.T) {
		s := newStore(t)
		data := payload(10000)
		if err := s.Put(ctx, "r", data); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name     string
			off, n   int64
			want     []byte
			wantFail bool
		}{
			{"head", 0, 10, data[:10], false},
			{"middle", 4000, 1000, data[4000:5000], false},
			{"tail to end", 9990, -1, data[9990:], false},
			{"exact end", 9000, 1000, data[9000:], false},
			{"past end", 9990, 20, nil, true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, err := s.Get(ctx, "r", c.off, c.n)
				if c.wantFail {
					if err == nil {
						t.Fatalf("range %d+%d past the end succeeded with %d bytes", c.off, c.n, len(got))
					}
					return
				}
				if err != nil || !bytes.Equal(got, c.want) {
					t.Fatalf("range %d+%d: %d bytes, %v", c.off, c.n, len(got), err)
				}
			})
		}
		rr, ok := s.(repo.RangeReader)
		if !ok {
			return
		}
		for _, c := range cases {
			if c.n <= 0 {
				continue
			}
			t.Run("stream "+c.name, func(t *testing.T) {
				rc, err := rr.GetReader(ctx, "r", c.off, c.n)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if c.wantFail {
					if err == nil && int64(len(got)) == c.n {
						t.Fatalf("stream %d+%d past the end read %d bytes", c.off, c.n, len(got))
					}
					return
				}
				if err != nil || !bytes.Equal(got, c.want) {
					t.Fatalf("stream %d+%d: %d bytes, %v", c.off, c.n, len(got), err)
				}
			})
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Get(ctx, "nope", 0, -1); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("get missing: %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "nope", 5, 10); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("range get missing: %v, want ErrNotFound", err)
		}
		if rr, ok := s.(repo.RangeReader); ok {
			rc, err := rr.GetReader(ctx, "nope", 5, 10)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, repo.ErrNotFound) {
				t.Errorf("stream missing: %v, want ErrNotFound", err)
			}
		}
		if _, err := s.Stat(ctx, "nope"); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("stat missing: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "nope"); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("delete missing: %v, want ErrNotFound", err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, "o", []byte("first")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "o", []byte("second!")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "o", 0, -1)
		if err != nil || string(got) != "second!" {
			t.Fatalf("after overwrite: %q, %v", got, err)
		}
	})

	t.Run("ListAndDelete", func(t *testing.T) {
		s := newStore(t)
		names := []string{"data/00/a", "data/00/b", "data/ff/c", "index/x", "snapshots/y", "config"}
		for _, n := range names {
			if err := s.Put(ctx, n, []byte(n)); err != nil {
				t.Fatal(err)
			}
		}
		list := func(prefix string) []string {
			var out []string
			if err := s.List(ctx, prefix, func(oi repo.ObjectInfo) error {
				if oi.Size != int64(len(oi.Name)) {
					t.Errorf("list %s: size %d, want %d", oi.Name, oi.Size, len(oi.Name))
				}
				out = append(out, oi.Name)
				return nil
			}); err != nil {
				t.Fatalf("list %q: %v", prefix, err)
			}
			sort.Strings(out)
			return out
		}
		if got := list("data/"); fmt.Sprint(got) != "[data/00/a data/00/b data/ff/c]" {
			t.Errorf("list data/ = %v", got)
		}
		if got := list(""); len(got) != len(names) {
			t.Errorf("list all = %v", got)
		}
		if got := list("nothing/"); len(got) != 0 {
			t.Errorf("list nothing/ = %v", got)
		}
		stop := errors.New("stop")
		if err := s.List(ctx, "data/", func(repo.ObjectInfo) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("list with failing callback: %v, want the callback's error", err)
		}
		if err := s.Delete(ctx, "data/00/a"); err != nil {
			t.Fatal(err)
		}
		if got := list("data/"); fmt.Sprint(got) != "[data/00/b data/ff/c]" {
			t.Errorf("after delete list = %v", got)
		}
		if _, err := s.Stat(ctx, "data/00/a"); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("stat deleted: %v", err)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.Put(cctx, "c", []byte("x")); err == nil {
			t.Error("put with cancelled context succeeded")
		}
		if _, err := s.Get(cctx, "c", 0, -1); err == nil {
			t.Error("get with cancelled context succeeded")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("data/%02x/c%d", i, i)
				want := bytes.Repeat([]byte{byte(i)}, 100000+i)
				if err := s.Put(ctx, name, want); err != nil {
					errs <- err
					return
				}
				got, err := s.Get(ctx, name, 0, -1)
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("read back %s: %d bytes, %v", name, len(got), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
