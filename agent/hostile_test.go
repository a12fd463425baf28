package agent_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
)

// storeSnapshot writes hand-made trees (root last) and a snapshot of them,
// bypassing the backup engine, the way a hostile repository could.
func storeSnapshot(t *testing.T, l *agent.Local, data map[string][]byte, trees ...repo.Tree) *repo.Snapshot {
	t.Helper()
	ctx := context.Background()
	var root chunk.ID
	var packs []repo.PackInfo
	var mu sync.Mutex
	_, err := l.Repo.WithUploader(ctx, repo.UploadOptions{OnPack: func(p repo.PackInfo) error {
		mu.Lock()
		defer mu.Unlock()
		packs = append(packs, p)
		return nil
	}}, func(ctx context.Context, up *repo.Uploader) error {
		for _, d := range data {
			if _, err := up.Add(ctx, repo.DataBlob, l.Repo.Hasher().Sum(d), d); err != nil {
				return err
			}
		}
		for _, tr := range trees {
			enc := tr.Encode() // Encode does not validate: a hostile writer
			root = l.Repo.Hasher().Sum(enc)
			if _, err := up.Add(ctx, repo.TreeBlob, root, enc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Index.AddPacks(packs); err != nil {
		t.Fatal(err)
	}
	sn := &repo.Snapshot{Time: time.Now(), Node: "evil", Path: "/evil", Tree: root}
	if err := l.Repo.SaveSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestRestoreRefusesHostileNames(t *testing.T) {
	for _, name := range []string{"..", "../escape", "/etc/cairn-escape", "a/../../b", "."} {
		t.Run(name, func(t *testing.T) {
			l := newLocal(t, mem.New())
			content := []byte("pwned")
			sn := storeSnapshot(t, l, map[string][]byte{"x": content}, repo.Tree{Nodes: []repo.Node{
				{Name: name, Type: repo.NodeFile, Mode: 0o644, Size: uint64(len(content)), Content: []chunk.ID{l.Repo.Hasher().Sum(content)}},
			}})
			parent := t.TempDir()
			target := filepath.Join(parent, "target")
			_, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target})
			if !errors.Is(err, repo.ErrCorrupt) {
				t.Fatalf("restore of a tree naming %q: %v, want ErrCorrupt", name, err)
			}
			assertOnly(t, parent, "target")
		})
	}
}

// assertOnly checks that dir holds nothing but the named entry (and what
// is inside it).
func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != name {
			t.Errorf("restore wrote %s outside the target", filepath.Join(dir, e.Name()))
		}
	}
}

func TestRestoreDoesNotFollowSymlinksInTarget(t *testing.T) {
	// The snapshot has a directory "sub" with a file; the target already
	// holds "sub" as a symlink to a folder outside, and "f" as a symlink to
	// a file outside. Restore must replace the links, not write through.
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "sub", "inner"), []byte("inner"))
	writeFile(t, filepath.Join(src, "f"), []byte("new content"))
	l := newLocal(t, mem.New())
	sn := snapshot(t, l, src, nil)

	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	writeFile(t, victim, []byte("untouched"))
	target := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(target, "f")); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "untouched" {
		t.Errorf("restore wrote through a symlink: victim now %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "inner")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restore wrote into a symlinked parent")
	}
	compareTrees(t, src, target)
}

func TestRestoreSymlinkEntriesNeverTraversed(t *testing.T) {
	// A hostile tree: a symlink "esc" to an outside folder, then a
	// directory whose files come later in restore order. Names are unique
	// per directory, so nothing can be written "through" esc; this checks
	// that the link is created as a link and the outside stays empty.
	outside := t.TempDir()
	l := newLocal(t, mem.New())
	content := []byte("data")
	leaf := repo.Tree{Nodes: []repo.Node{{Name: "file", Type: repo.NodeFile, Mode: 0o644, Size: 4, Content: []chunk.ID{l.Repo.Hasher().Sum(content)}}}}
	leafID := l.Repo.Hasher().Sum(leaf.Encode())
	root := repo.Tree{Nodes: []repo.Node{
		{Name: "a", Type: repo.NodeDir, Mode: 0o755, Subtree: leafID},
		{Name: "esc", Type: repo.NodeSymlink, LinkTarget: outside},
	}}
	sn := storeSnapshot(t, l, map[string][]byte{"d": content}, leaf, root)
	target := t.TempDir()
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(filepath.Join(target, "esc")); got != outside {
		t.Errorf("symlink restored as %q", got)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("outside folder got %d entries", len(entries))
	}
}

func TestHardlinkToSymlink(t *testing.T) {
	// On Linux link(2) on a symlink links the symlink itself.
	src := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "nowhere"), filepath.Join(src, "sym")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "sym"), filepath.Join(src, "hard-to-sym")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "after"), []byte("after"))
	l := newLocal(t, mem.New())
	sn := snapshot(t, l, src, nil)
	target := t.TempDir()
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sym", "hard-to-sym"} {
		fi, err := os.Lstat(filepath.Join(target, name))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s: %v, mode %v; want a symlink", name, err, fi.Mode())
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("restore created %d entries outside", len(entries))
	}
}

func TestUnreadableAndVanishedFilesAreCountedNotFatal(t *testing.T) {
	src := t.TempDir()
	for _, n := range []string{"ok1", "secret", "gone", "ok2"} {
		writeFile(t, filepath.Join(src, n), []byte(n))
	}
	restore := agent.SetOpenFailure(func(name string) error {
		switch filepath.Base(name) {
		case "secret":
			return syscall.EACCES
		case "gone":
			return syscall.ENOENT
		}
		return nil
	})
	defer restore()
	l := newLocal(t, mem.New())
	var mu sync.Mutex
	var reported []string
	sn, err := l.Snapshot(context.Background(), agent.BackupOptions{Node: "n", Path: src, OnError: func(p string, err error) {
		mu.Lock()
		reported = append(reported, filepath.Base(p)+": "+err.Error())
		mu.Unlock()
	}}, false)
	if err != nil {
		t.Fatalf("unreadable files made the backup fail: %v", err)
	}
	if sn.Summary.Errors != 2 || sn.Summary.FilesNew != 2 || len(reported) != 2 {
		t.Fatalf("summary %+v, reported %v; want 2 errors, 2 files", sn.Summary, reported)
	}
	joined := strings.Join(reported, "\n")
	if !strings.Contains(joined, "permission denied") || !strings.Contains(joined, "no such file") {
		t.Errorf("reports do not say what happened: %v", reported)
	}
	target := t.TempDir()
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(target)
	if len(entries) != 2 {
		t.Errorf("restored %d entries, want the 2 readable files", len(entries))
	}
}

// A folder that cannot be listed is reported and left out, and its
// siblings are stored; the backup still succeeds.
func TestUnlistableFolderIsReportedNotFatal(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a/file"), []byte("a"))
	writeFile(t, filepath.Join(src, "locked/inside"), []byte("secret"))
	writeFile(t, filepath.Join(src, "z"), []byte("z"))
	restore := agent.SetOpenFailure(func(name string) error {
		if filepath.Base(name) == "locked" {
			return syscall.EACCES
		}
		return nil
	})
	defer restore()
	l := newLocal(t, mem.New())
	var reported []string
	var mu sync.Mutex
	sn, err := l.Snapshot(context.Background(), agent.BackupOptions{Node: "n", Path: src, OnError: func(p string, err error) {
		mu.Lock()
		reported = append(reported, p+": "+err.Error())
		mu.Unlock()
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(reported) != 1 || !strings.Contains(reported[0], filepath.Join(src, "locked")) || !strings.Contains(reported[0], "permission denied") {
		t.Fatalf("reported %v; want the locked folder, permission denied", reported)
	}
	if sn.Summary.Errors != 1 || sn.Summary.FilesNew != 2 {
		t.Errorf("summary %+v; want 1 error, 2 files", sn.Summary)
	}
}

// The snapshot of a single file finds it when a folder on its path is a
// symlink, and stores the file, not the link.
func TestSingleFileThroughSymlinkedFolder(t *testing.T) {
	real := t.TempDir()
	writeFile(t, filepath.Join(real, "data.txt"), []byte("through a link"))
	via := filepath.Join(t.TempDir(), "via")
	if err := os.Symlink(real, via); err != nil {
		t.Fatal(err)
	}
	l := newLocal(t, mem.New())
	sn := snapshot(t, l, filepath.Join(via, "data.txt"), nil)
	if sn.Summary.FilesNew != 1 || sn.Summary.Errors != 0 {
		t.Fatalf("summary %+v; want one new file", sn.Summary)
	}
	target := t.TempDir()
	if _, err := agent.Restore(context.Background(), l.Repo, l.Index, sn, "", agent.RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "data.txt")); err != nil || string(got) != "through a link" {
		t.Fatalf("restored %q, %v", got, err)
	}
}
