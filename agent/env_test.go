package agent_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/dir"
	"github.com/cairn-backup/cairn/repo/mem"
	"github.com/cairn-backup/cairn/repo/storetest"
)

const testPassword = "correct horse battery staple"

// testKDF is cheap: tests open repositories many times.
var testKDF = repo.KDFParams{Time: 1, Memory: 64, Threads: 1}

// testChunker has a fixed polynomial and key so runs are reproducible.
func testChunker() *chunk.Params {
	return &chunk.Params{
		Polynomial: chunker.Pol(0x3DA3358B4DC173), MinSize: chunk.DefaultMinSize,
		MaxSize: chunk.DefaultMaxSize, AverageBits: chunk.DefaultAverageBits,
		IDKey: make([]byte, 32),
	}
}

type storeKind struct {
	name string
	new  func(t *testing.T) repo.Store
}

// stores are the backends every engine property is checked against.
var stores = []storeKind{
	{"mem", func(t *testing.T) repo.Store { return mem.New() }},
	{"dir", func(t *testing.T) repo.Store {
		s, err := dir.New(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"s3", func(t *testing.T) repo.Store { return storetest.NewMinIOStore(t) }},
}

// newLocal initialises a repository on st and opens it with a fresh index.
func newLocal(t testing.TB, st repo.Store) *agent.Local {
	t.Helper()
	ctx := context.Background()
	if _, err := repo.Init(ctx, st, testPassword, repo.InitOptions{KDF: testKDF, Chunker: testChunker()}); err != nil {
		t.Fatal(err)
	}
	return openLocal(t, st, t.TempDir())
}

func openLocal(t testing.TB, st repo.Store, indexDir string) *agent.Local {
	t.Helper()
	r, err := repo.Open(context.Background(), st, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := agent.OpenLocal(context.Background(), r, indexDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func snapshot(t testing.TB, l *agent.Local, path string, mod func(*agent.BackupOptions)) *repo.Snapshot {
	t.Helper()
	opts := agent.BackupOptions{Node: "testnode", Path: path,
		OnError: func(p string, err error) { t.Logf("backup error at %s: %v", p, err) }}
	if mod != nil {
		mod(&opts)
	}
	sn, err := l.Snapshot(context.Background(), opts, false)
	if err != nil {
		t.Fatalf("snapshot %s: %v", path, err)
	}
	return sn
}

func randBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rnd.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ageTree sets every mtime an hour back, so nothing is too recent to trust
// (the racy-mtime rule) on the next backup.
func ageTree(t testing.TB, root string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// entry is what a tree comparison looks at.
type entry struct {
	Type    fs.FileMode
	Mode    fs.FileMode
	Size    int64
	MTime   int64
	Target  string
	Digest  string
	LinkGrp string // for hard links: the first name of the inode
	UID     uint32
	GID     uint32
}

// describe captures a tree's content and metadata, keyed by relative path.
func describe(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	inodes := map[uint64]string{}
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, p := range names {
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Type: fi.Mode().Type(), Mode: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			e.MTime = fi.ModTime().UnixNano()
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			e.Digest = fmt.Sprintf("%x", h.Sum(nil))
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					e.LinkGrp = first
				} else {
					inodes[st.Ino] = rel
					e.LinkGrp = rel
				}
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, _ = os.Readlink(p)
			e.Mode = 0
		case fi.IsDir():
			e.MTime = fi.ModTime().UnixNano()
		}
		out[rel] = e
	}
	return out
}

func compareTrees(t *testing.T, src, dst string) { compareTreesOpt(t, src, dst, false) }

// compareTreesOpt with ignoreLinks compares a restored subtree whose hard
// links may have had their other names outside it.
func compareTreesOpt(t *testing.T, src, dst string, ignoreLinks bool) {
	t.Helper()
	a, b := describe(t, src), describe(t, dst)
	for name, ea := range a {
		if ignoreLinks {
			ea.LinkGrp = ""
			eb := b[name]
			eb.LinkGrp = ""
			b[name] = eb
		}
		eb, ok := b[name]
		if !ok {
			t.Errorf("%s: missing after restore", name)
			continue
		}
		if ea != eb {
			t.Errorf("%s: source %+v\n\trestored %+v", name, ea, eb)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			t.Errorf("%s: restored but not in source", name)
		}
	}
}
