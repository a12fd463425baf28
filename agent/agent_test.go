package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
	"github.com/cairn-backup/cairn/repo/storetest"
)

// richTree builds the tree the round-trip property is checked on.
func richTree(t *testing.T, root string, big int) {
	rnd := rand.New(rand.NewPCG(7, 7))
	writeFile(t, filepath.Join(root, "empty"), nil)
	writeFile(t, filepath.Join(root, "one"), []byte{'x'})
	writeFile(t, filepath.Join(root, "name with spaces.txt"), []byte("spaces\n"))
	writeFile(t, filepath.Join(root, "ünïcødé-名前.txt"), []byte("utf-8 names\n"))
	writeFile(t, filepath.Join(root, "dir/sub/deep.bin"), randBytes(rnd, 3<<20+17))
	writeFile(t, filepath.Join(root, "dir/text.txt"), bytes.Repeat([]byte("compressible line\n"), 100000))
	if big > 0 {
		writeFile(t, filepath.Join(root, "big.bin"), randBytes(rnd, big))
	}
	if err := os.MkdirAll(filepath.Join(root, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/text.txt", filepath.Join(root, "link-rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(root, "link-dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "dir/sub/deep.bin"), filepath.Join(root, "hardlink.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\n"), 0o751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "exec.sh"), 0o751); err != nil {
		t.Fatal(err)
	}
	// A sparse file: 8 MiB hole, some data, 8 MiB hole.
	f, err := os.Create(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("in the middle"), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	ageTree(t, root)
}

func TestRoundTrip(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			big := 0
			if sk.name != "mem" {
				big = 100<<20 + 12345 // over 100 MiB, on the real stores
			}
			src := t.TempDir()
			richTree(t, src, big)
			l := newLocal(t, sk.new(t))
			sn := snapshot(t, l, src, nil)
			if sn.Summary.Errors != 0 {
				t.Fatalf("backup reported %d errors", sn.Summary.Errors)
			}
			dst := filepath.Join(t.TempDir(), "restore")
			if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: dst}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, src, dst)

			// The sparse file came back with holes.
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dst, "sparse"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 >= 16<<20 {
				t.Errorf("sparse file restored with %d bytes allocated, want holes", st.Blocks*512)
			}
		})
	}
}

// Restoring in batches (of files or of bytes) gives the same tree as in
// one go: metadata set per batch survives later batches, and hard links
// whose first name was written in an earlier batch still link.
func TestRestoreInBatches(t *testing.T) {
	src := t.TempDir()
	richTree(t, src, 0)
	for i := range 40 {
		writeFile(t, filepath.Join(src, "many", fmt.Sprintf("f%02d", i)), []byte(strings.Repeat("x", i)))
	}
	if err := os.Link(filepath.Join(src, "many/f07"), filepath.Join(src, "zz-late-link")); err != nil {
		t.Fatal(err)
	}
	ageTree(t, src)
	l := newLocal(t, stores[0].new(t))
	sn := snapshot(t, l, src, nil)
	for _, tc := range []struct {
		name  string
		files int
		bytes int64
	}{
		{"one file per batch", 1, 0},
		{"three files per batch", 3, 0},
		{"one byte per batch", 0, 1},
		{"1 MiB per batch", 0, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "restore")
			st, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "",
				agent.RestoreOptions{Target: dst, BatchFiles: tc.files, BatchBytes: tc.bytes})
			if err != nil {
				t.Fatal(err)
			}
			compareTrees(t, src, dst)
			if st.Files < 40 || st.Hardlinks != 2 {
				t.Errorf("restored %d files, %d hard links; want at least 40 and 2", st.Files, st.Hardlinks)
			}
		})
	}
}

func TestRestoreSubpathAndSingleFile(t *testing.T) {
	src := t.TempDir()
	richTree(t, src, 0)
	l := newLocal(t, stores[0].new(t))
	sn := snapshot(t, l, src, nil)
	ctx := context.Background()

	dst := t.TempDir()
	if _, err := agent.Restore(ctx, l.Repo, l.Index, sn, "dir", agent.RestoreOptions{Target: dst}); err != nil {
		t.Fatal(err)
	}
	compareTreesOpt(t, filepath.Join(src, "dir"), filepath.Join(dst, "dir"), true)

	dst2 := t.TempDir()
	if _, err := agent.Restore(ctx, l.Repo, l.Index, sn, "/dir/sub/deep.bin", agent.RestoreOptions{Target: dst2}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "dir/sub/deep.bin"))
	got, err := os.ReadFile(filepath.Join(dst2, "deep.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("single file restore: %d bytes, %v", len(got), err)
	}
	if _, err := agent.Restore(ctx, l.Repo, l.Index, sn, "no/such/thing", agent.RestoreOptions{Target: t.TempDir()}); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("restore of a missing path: %v, want ErrNotFound", err)
	}

	// A snapshot of a single file.
	one := snapshot(t, l, filepath.Join(src, "one"), nil)
	dst3 := t.TempDir()
	if _, err := agent.Restore(ctx, l.Repo, l.Index, one, "", agent.RestoreOptions{Target: dst3}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst3, "one")); string(got) != "x" {
		t.Fatalf("single-file snapshot restored %q", got)
	}
}

// hidingIndex answers one chunk as unknown, as an index that lost it
// would, through both ways a restore looks chunks up.
type hidingIndex struct {
	*index.Index
	hide chunk.ID
}

func (h hidingIndex) Lookup(t repo.BlobType, id chunk.ID) (index.Location, bool, error) {
	if id == h.hide {
		return index.Location{}, false, nil
	}
	return h.Index.Lookup(t, id)
}

func (h hidingIndex) LookupMany(t repo.BlobType, ids []chunk.ID, fn func(int, index.Location, bool) error) error {
	return h.Index.LookupMany(t, ids, func(i int, loc index.Location, found bool) error {
		return fn(i, loc, found && ids[i] != h.hide)
	})
}

// A chunk missing from the index fails the restore with an error that
// names the file, whether the whole snapshot or only that file is
// restored.
func TestRestoreOfAChunkMissingFromTheIndexNamesTheFile(t *testing.T) {
	src := t.TempDir()
	richTree(t, src, 0)
	l := newLocal(t, stores[0].new(t))
	sn := snapshot(t, l, src, nil)
	ctx := context.Background()
	n, _, err := agent.Resolve(ctx, l.Repo, l.Index, sn, "dir/text.txt")
	if err != nil || len(n.Content) == 0 {
		t.Fatalf("resolve: %+v %v", n, err)
	}
	ix := hidingIndex{Index: l.Index, hide: n.Content[len(n.Content)-1]}
	for _, sub := range []string{"", "dir", "dir/text.txt"} {
		_, err := agent.Restore(ctx, l.Repo, ix, sn, sub, agent.RestoreOptions{Target: t.TempDir()})
		if !errors.Is(err, repo.ErrNotFound) || !strings.Contains(err.Error(), "text.txt") || !strings.Contains(err.Error(), "not in the index") {
			t.Errorf("restore of %q: %v; want ErrNotFound naming text.txt", sub, err)
		}
	}
}

func TestUnchangedTreeReadsAndUploadsNothing(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			src := t.TempDir()
			richTree(t, src, 0)
			rec := storetest.NewRecorder(sk.new(t))
			l := newLocal(t, rec)
			first := snapshot(t, l, src, nil)
			if first.Summary.BytesRead == 0 || first.Summary.Packs == 0 {
				t.Fatalf("first snapshot read %d bytes in %d packs", first.Summary.BytesRead, first.Summary.Packs)
			}
			rec.Reset()
			second := snapshot(t, l, src, nil)
			s := second.Summary
			if s.BytesRead != 0 || s.FilesNew+s.FilesChanged != 0 || s.Packs != 0 {
				t.Errorf("second snapshot: %+v; want nothing read or stored", s)
			}
			if n := rec.Count("put", "data/"); n != 0 {
				t.Errorf("second snapshot made %d pack PUTs, want 0", n)
			}
			if n := rec.Count("get", "data/"); n > 10 {
				t.Errorf("second snapshot made %d pack GETs; only parent trees should be read", n)
			}
			if second.Tree != first.Tree {
				t.Errorf("unchanged tree got a new root ID")
			}
			if second.Parent != first.ID {
				t.Errorf("second snapshot's parent is %q, want %q", second.Parent, first.ID)
			}
			// --rehash reads everything but stores nothing new.
			rec.Reset()
			third := snapshot(t, l, src, func(o *agent.BackupOptions) { o.Rehash = true })
			if third.Summary.BytesRead == 0 || rec.Count("put", "data/") != 0 {
				t.Errorf("rehash: read %d bytes, %d pack PUTs", third.Summary.BytesRead, rec.Count("put", "data/"))
			}
		})
	}
}

func TestOneByteChangeAddsAboutOneChunk(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			src := t.TempDir()
			rnd := rand.New(rand.NewPCG(3, 4))
			data := randBytes(rnd, 50<<20)
			p := filepath.Join(src, "big.bin")
			writeFile(t, p, data)
			l := newLocal(t, sk.new(t))
			first := snapshot(t, l, src, nil)
			data[25<<20] ^= 0xff
			writeFile(t, p, data)
			second := snapshot(t, l, src, nil)
			s := second.Summary
			t.Logf("first: %d chunks; after one-byte change: %d new chunks, %d bytes added, %d reused",
				first.Summary.ChunksNew, s.ChunksNew, s.BytesAdded, s.ChunksReused)
			if s.FilesChanged != 1 || s.ChunksNew > 2 || s.BytesAdded > 2*8<<20 || s.ChunksReused < first.Summary.ChunksNew-2 {
				t.Errorf("one-byte change: %+v; want about one new chunk", s)
			}
		})
	}
}

func TestFlippedByteInPackFailsRestoreNamingThePack(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "f.bin"), randBytes(rand.New(rand.NewPCG(1, 1)), 2<<20))
			st := sk.new(t)
			l := newLocal(t, st)
			sn := snapshot(t, l, src, nil)
			dataPack := packsOf(t, l, repo.DataBlob)
			rewrite(t, st, dataPack.ObjectName(), func(b []byte) []byte { b[100] ^= 1; return b })

			dst := t.TempDir()
			_, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: dst})
			if err == nil || !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), dataPack.String()) {
				t.Fatalf("restore of a corrupt pack: %v; want ErrCorrupt naming pack %s", err, dataPack)
			}
			var buf bytes.Buffer
			err = agent.WriteTar(context.Background(), l.Repo, l.Index, sn, "", &buf)
			if err == nil || !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), dataPack.String()) {
				t.Fatalf("tar of a corrupt pack: %v; want ErrCorrupt naming pack %s", err, dataPack)
			}
		})
	}
}

// Subdirectories are walked in parallel: the snapshot must not depend on
// which walker got there first, a file with names in many folders walked
// at once is still read once, and the tree restores exactly.
func TestParallelWalkIsDeterministic(t *testing.T) {
	src := t.TempDir()
	rnd := rand.New(rand.NewPCG(7, 7))
	shared := filepath.Join(src, "shared.bin")
	writeFile(t, shared, randBytes(rnd, 64<<10))
	var want uint64 = 64 << 10
	for i := range 40 {
		d := filepath.Join(src, fmt.Sprintf("a%02d", i%8), fmt.Sprintf("b%02d", i), "c")
		data := randBytes(rnd, 1+rnd.IntN(4<<10))
		writeFile(t, filepath.Join(d, "f"), data)
		want += uint64(len(data))
		if err := os.Link(shared, filepath.Join(d, "link")); err != nil {
			t.Fatal(err)
		}
	}
	ageTree(t, src)
	l := newLocal(t, mem.New())
	first := snapshot(t, l, src, nil)
	if got := first.Summary.BytesRead; got != want {
		t.Errorf("read %d bytes, want %d (the shared file once)", got, want)
	}
	for range 3 {
		again := snapshot(t, l, src, func(o *agent.BackupOptions) { o.Rehash = true })
		if again.Tree != first.Tree {
			t.Fatalf("same tree, new root %s (was %s)", again.Tree.Short(), first.Tree.Short())
		}
	}
	dst := t.TempDir()
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, first, "", agent.RestoreOptions{Target: dst}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst)
}
