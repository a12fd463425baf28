package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

// writeState makes dir hold state i of a changing tree: files f<i>..f<i+19>
// (so one file leaves and one arrives per state) and a log rewritten each
// time. Contents depend only on the file's seed, so a state can be
// recreated anywhere.
func writeState(t testing.TB, dir string, i int) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	for j := i; j < i+20; j++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%03d", j)), randBytes(rand.New(rand.NewPCG(uint64(j), 1)), 150<<10))
	}
	writeFile(t, filepath.Join(dir, "sub", "log"), randBytes(rand.New(rand.NewPCG(uint64(i), 2)), 60<<10))
	ageTree(t, dir)
}

func storedBytes(t testing.TB, l *agent.Local) int64 {
	t.Helper()
	packs, err := l.Index.Packs()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range packs {
		n += p.Size
	}
	return n
}

// newLocalPacks is newLocal with small packs, so that data of many
// snapshots shares packs and garbage collection has to repack.
func newLocalPacks(t testing.TB, st repo.Store, packSize int) *agent.Local {
	t.Helper()
	if _, err := repo.Init(context.Background(), st, testPassword, repo.InitOptions{KDF: testKDF, Chunker: testChunker(), PackSize: packSize}); err != nil {
		t.Fatal(err)
	}
	return openLocal(t, st, t.TempDir())
}

func keepAndCollect(t testing.TB, l *agent.Local, sn *repo.Snapshot, keep int) {
	t.Helper()
	ctx := context.Background()
	if _, err := l.Retain(ctx, agent.Selector{Node: sn.Node, Path: sn.Path}, agent.Policy{Last: keep}, time.UTC, false); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.GC(ctx, l, agent.GCOptions{}); err != nil {
		t.Fatal(err)
	}
}

func checkHealthy(t testing.TB, l *agent.Local) {
	t.Helper()
	rep, err := agent.Check(context.Background(), l, agent.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Healthy() {
		t.Fatalf("check --read-data found problems: %+v", rep.Problems)
	}
}

func TestRetentionKeepsTenAndGCReclaims(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			os.MkdirAll(src, 0o755)
			l := newLocalPacks(t, sk.new(t), 1<<20)
			states := map[repo.SnapshotID]int{}
			for i := 1; i <= 15; i++ {
				writeState(t, src, i)
				sn := snapshot(t, l, src, nil)
				states[sn.ID] = i
				keepAndCollect(t, l, sn, 10)
			}
			sns, err := l.Index.Snapshots()
			if err != nil {
				t.Fatal(err)
			}
			if len(sns) != 10 {
				t.Fatalf("%d snapshots remain, want 10", len(sns))
			}
			for k, sn := range sns {
				if states[sn.ID] != 15-k {
					t.Fatalf("snapshot %d is of state %d, want %d (the newest ten)", k, states[sn.ID], 15-k)
				}
			}
			checkHealthy(t, l)
			// Every kept snapshot restores to its state.
			for _, sn := range sns[:3] {
				want := filepath.Join(t.TempDir(), "want")
				os.MkdirAll(want, 0o755)
				writeState(t, want, states[sn.ID])
				dst := filepath.Join(t.TempDir(), "dst")
				if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: dst}); err != nil {
					t.Fatal(err)
				}
				compareContents(t, want, dst)
			}

			// A fresh repository holding only states 6..15.
			fresh := newLocalPacks(t, sk.new(t), 1<<20)
			for i := 6; i <= 15; i++ {
				writeState(t, src, i)
				snapshot(t, fresh, src, nil)
			}
			got, want := storedBytes(t, l), storedBytes(t, fresh)
			t.Logf("after 15 snapshots and gc: %d bytes stored; fresh repository of the same 10: %d", got, want)
			if float64(got) > float64(want)*(1+agent.DefaultRepackThreshold) {
				t.Errorf("stored %d bytes, more than %.0f%% over a fresh repository's %d", got, 100*agent.DefaultRepackThreshold, want)
			}
		})
	}
}

// compareContents compares file names and bytes (state files get fresh
// mtimes when rewritten, so metadata is not compared).
func compareContents(t testing.TB, a, b string) {
	t.Helper()
	da, db := describe(t.(*testing.T), a), describe(t.(*testing.T), b)
	if len(da) != len(db) {
		t.Errorf("%d entries, want %d", len(db), len(da))
	}
	for name, ea := range da {
		if eb, ok := db[name]; !ok || ea.Digest != eb.Digest || ea.Size != eb.Size {
			t.Errorf("%s differs after restore", name)
		}
	}
}

func TestGCAfterForgettingAllButOne(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			ctx := context.Background()
			src := filepath.Join(t.TempDir(), "src")
			os.MkdirAll(src, 0o755)
			l := newLocalPacks(t, sk.new(t), 1<<20)
			var last *repo.Snapshot
			for i := 1; i <= 6; i++ {
				writeState(t, src, i*5)
				last = snapshot(t, l, src, nil)
			}
			before := storedBytes(t, l)
			keepAndCollect(t, l, last, 1)
			after := storedBytes(t, l)
			if after >= before/2 {
				t.Errorf("gc kept %d of %d bytes after forgetting 5 of 6 disjoint states", after, before)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			if _, err := agent.Restore(ctx, l.Repo, l.Index, last, "", agent.RestoreOptions{Target: dst}); err != nil {
				t.Fatal(err)
			}
			compareTrees(t, src, dst)
			checkHealthy(t, l)
			// A second run finds nothing to do.
			st, err := agent.GC(ctx, l, agent.GCOptions{})
			if err != nil || st.PacksDeleted+st.PacksRepacked != 0 {
				t.Errorf("second gc: %+v %v", st, err)
			}
		})
	}
}

func TestGCRefusesImplausibleLiveSet(t *testing.T) {
	src := t.TempDir()
	writeState(t, src, 1)
	st := stores[0].new(t)
	l := newLocal(t, st)
	sn := snapshot(t, l, src, nil)
	// Every snapshot gone (a short listing, a wiped catalog): refuse.
	if err := l.Forget(context.Background(), []repo.SnapshotID{sn.ID}); err != nil {
		t.Fatal(err)
	}
	_, err := agent.GC(context.Background(), l, agent.GCOptions{})
	if err == nil || !strings.Contains(err.Error(), "implausible") {
		t.Fatalf("gc with no live snapshot: %v", err)
	}
	if n := storedBytes(t, l); n == 0 {
		t.Fatal("refused gc deleted data")
	}
	if _, err := agent.GC(context.Background(), l, agent.GCOptions{Force: true}); err != nil {
		t.Fatalf("forced gc: %v", err)
	}
}

// fault is one injected corruption of a stored object.
type fault struct {
	name   string
	inject func(t *testing.T, st repo.Store, l *agent.Local) string // returns the object it broke
}

func packsOf(t *testing.T, l *agent.Local, bt repo.BlobType) repo.PackID {
	var id repo.PackID
	err := l.Index.EachBlob(func(loc agentLoc) error {
		if loc.Entry.Type == bt {
			id = loc.Pack
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func rewrite(t *testing.T, st repo.Store, name string, f func([]byte) []byte) {
	ctx := context.Background()
	b, err := st.Get(ctx, name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, name, f(b)); err != nil {
		t.Fatal(err)
	}
}

var faults = []fault{
	{"deleted pack", func(t *testing.T, st repo.Store, l *agent.Local) string {
		id := packsOf(t, l, repo.DataBlob)
		if err := st.Delete(context.Background(), id.ObjectName()); err != nil {
			t.Fatal(err)
		}
		return id.String()
	}},
	{"truncated pack", func(t *testing.T, st repo.Store, l *agent.Local) string {
		id := packsOf(t, l, repo.DataBlob)
		rewrite(t, st, id.ObjectName(), func(b []byte) []byte { return b[:len(b)/2] })
		return id.String()
	}},
	{"flipped byte in data pack", func(t *testing.T, st repo.Store, l *agent.Local) string {
		id := packsOf(t, l, repo.DataBlob)
		rewrite(t, st, id.ObjectName(), func(b []byte) []byte { b[len(b)/3] ^= 1; return b })
		return id.String()
	}},
	{"flipped byte in tree", func(t *testing.T, st repo.Store, l *agent.Local) string {
		id := packsOf(t, l, repo.TreeBlob)
		rewrite(t, st, id.ObjectName(), func(b []byte) []byte { b[20] ^= 1; return b })
		return id.String()
	}},
}

func TestCheckFindsEveryInjectedFault(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			for _, f := range faults {
				t.Run(f.name, func(t *testing.T) {
					src := t.TempDir()
					writeState(t, src, 1)
					st := sk.new(t)
					l := newLocal(t, st)
					snapshot(t, l, src, nil)
					checkHealthy(t, l) // 0 false reports on a healthy repository
					broken := f.inject(t, st, l)
					rep, err := agent.Check(context.Background(), l, agent.CheckOptions{ReadData: true})
					if err != nil {
						t.Fatal(err)
					}
					found := false
					for _, p := range rep.Problems {
						found = found || strings.Contains(p.Object+p.Error, broken)
					}
					if !found {
						t.Fatalf("check did not name %s; problems: %+v", broken, rep.Problems)
					}
				})
			}
		})
	}
}

func makeTar(t *testing.T, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(h)
			}
			seen[st.Ino] = rel
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

func TestTarInput(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			writeState(t, src, 5)
			os.Symlink("f005", filepath.Join(src, "link"))
			os.Link(filepath.Join(src, "f005"), filepath.Join(src, "hard-f005"))
			archive := makeTar(t, src)
			l := newLocal(t, sk.new(t))
			opts := agent.BackupOptions{Node: "n", Path: "/data"}
			first, err := l.SnapshotTar(ctx, bytes.NewReader(archive), opts)
			if err != nil {
				t.Fatal(err)
			}
			second, err := l.SnapshotTar(ctx, bytes.NewReader(archive), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("tar of %d bytes: first added %d, second %d", len(archive), first.Summary.StoredAdded, second.Summary.StoredAdded)
			if second.Summary.StoredAdded > 4096 || second.Summary.ChunksNew != 0 {
				t.Errorf("second tar added %d bytes, %d chunks", second.Summary.StoredAdded, second.Summary.ChunksNew)
			}
			// Restore to a folder: same files, the hard link linked again.
			dst := t.TempDir()
			if _, err := agent.Restore(ctx, l.Repo, l.Index, second, "", agent.RestoreOptions{Target: dst}); err != nil {
				t.Fatal(err)
			}
			compareContents(t, src, dst)
			a, _ := os.Stat(filepath.Join(dst, "f005"))
			b, _ := os.Stat(filepath.Join(dst, "hard-f005"))
			if !os.SameFile(a, b) {
				t.Errorf("hard link from the tar not restored as a hard link")
			}
			// And back to an equivalent tar.
			var out bytes.Buffer
			if err := agent.WriteTar(ctx, l.Repo, l.Index, second, "", &out); err != nil {
				t.Fatal(err)
			}
			in, back := tarEntries(t, archive), tarEntries(t, out.Bytes())
			for name, e := range in {
				if back[name] != e {
					t.Errorf("tar entry %s: got %q, want %q", name, back[name], e)
				}
			}
			if len(in) != len(back) {
				t.Errorf("tar has %d entries, want %d", len(back), len(in))
			}
		})
	}
}

// tarEntries summarises a tar as name → type, mode, size, mtime and content
// digest (hard links as their target).
func tarEntries(t *testing.T, b []byte) map[string]string {
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = fmt.Sprintf("%c %o %d %d %s %x", h.Typeflag, h.Mode, h.Size, h.ModTime.Unix(), h.Linkname, data[:min(len(data), 16)])
	}
}

func TestDiff(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeState(t, src, 1)
	l := newLocal(t, stores[0].new(t))
	a := snapshot(t, l, src, nil)
	os.Remove(filepath.Join(src, "f001"))
	writeFile(t, filepath.Join(src, "new", "x"), []byte("x"))
	writeFile(t, filepath.Join(src, "f002"), []byte("changed"))
	os.Chmod(filepath.Join(src, "f003"), 0o600)
	b := snapshot(t, l, src, nil)
	var got []string
	err := agent.Diff(ctx, l.Repo, l.Index, a, b, func(c agent.Change) error {
		got = append(got, fmt.Sprintf("%c %s", c.Kind, c.Path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[- /f001 M /f002 U /f003 + /new + /new/x]"
	if fmt.Sprint(got) != want {
		t.Errorf("diff = %v, want %s", got, want)
	}
	got = nil
	agent.Diff(ctx, l.Repo, l.Index, b, b, func(c agent.Change) error { got = append(got, c.Path); return nil })
	if len(got) != 0 {
		t.Errorf("diff of a snapshot with itself: %v", got)
	}
}
