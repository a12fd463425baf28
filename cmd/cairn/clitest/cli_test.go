package clitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/repo/storetest"
)

var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-cli")
	if err != nil {
		panic(err)
	}
	cairnBin = filepath.Join(dir, "cairn")
	out, err := exec.Command("go", "build", "-o", cairnBin, "github.com/cairn-backup/cairn/cmd/cairn").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cairn: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one repository and the environment the binary runs with.
type env struct {
	t    *testing.T
	vars []string
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runWith(nil, args...)
}

func (e *env) runWith(extra []string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Env = append(append(append([]string{}, e.vars...), extra...), "PATH="+os.Getenv("PATH"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run cairn %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

func (e *env) must(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("cairn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func newDirEnv(t *testing.T) *env {
	base := t.TempDir()
	return &env{t: t, vars: []string{
		"HOME=" + base, "CAIRN_REPO=" + filepath.Join(base, "repo"),
		"CAIRN_STATE_DIR=" + filepath.Join(base, "state"), "CAIRN_PASSWORD=secret",
	}}
}

func newS3Env(t *testing.T) *env {
	cfg := storetest.MinIOConfig(t)
	base := t.TempDir()
	return &env{t: t, vars: []string{
		"HOME=" + base, "CAIRN_REPO=s3://" + cfg.Endpoint + "/" + cfg.Bucket + "/some/prefix",
		"CAIRN_STATE_DIR=" + filepath.Join(base, "state"), "CAIRN_PASSWORD=secret",
		"AWS_ACCESS_KEY_ID=" + cfg.AccessKey, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretKey, "CAIRN_S3_HTTP=1",
	}}
}

func (e *env) get(name string) string {
	for _, v := range e.vars {
		if k, val, _ := strings.Cut(v, "="); k == name {
			return val
		}
	}
	return ""
}

func makeTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"a.txt":            "alpha\n",
		"sub/b.txt":        strings.Repeat("bravo ", 10000),
		"sub/deeper/c.md":  "charlie",
		"with space/ü.txt": "unicode",
		"empty":            "",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/b.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
}

func diffTrees(t *testing.T, a, b string) {
	t.Helper()
	out, err := exec.Command("diff", "-r", "--no-dereference", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("trees differ: %v\n%s", err, out)
	}
}

func TestCLIBackupRestore(t *testing.T) {
	for _, kind := range []struct {
		name string
		new  func(*testing.T) *env
	}{{"dir", newDirEnv}, {"s3", newS3Env}} {
		t.Run(kind.name, func(t *testing.T) {
			e := kind.new(t)
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			e.must("init")
			out := e.must("snapshot", "--node", "n1", src)
			if !strings.Contains(out, "5 new, 0 changed, 0 unchanged") {
				t.Errorf("first snapshot summary:\n%s", out)
			}
			if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha two\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			out = e.must("snapshot", "--node", "n1", "--json", src)
			if !strings.Contains(out, `"files_changed":1`) || !strings.Contains(out, `"files_unchanged":4`) {
				t.Errorf("second snapshot JSON: %s", out)
			}
			hist := e.must("snapshots", "n1:"+src)
			if !strings.Contains(hist, "2 snapshots") {
				t.Errorf("history:\n%s", hist)
			}

			dst := filepath.Join(t.TempDir(), "dst")
			e.must("restore", "n1:"+src+"@latest", "--target", dst)
			diffTrees(t, src, dst)

			// The older version of one file.
			old := filepath.Join(t.TempDir(), "old")
			e.must("restore", "n1:"+src+"@2:/a.txt", "--target", old)
			if b, _ := os.ReadFile(filepath.Join(old, "a.txt")); string(b) != "alpha\n" {
				t.Errorf("version 2 of a.txt = %q", b)
			}

			ls := e.must("ls", "latest:/sub")
			for _, want := range []string{"/sub/b.txt", "/sub/deeper/c.md"} {
				if !strings.Contains(ls, want) {
					t.Errorf("ls lacks %s:\n%s", want, ls)
				}
			}
			stats := e.must("stats")
			if !strings.Contains(stats, "snapshots:      2") {
				t.Errorf("stats:\n%s", stats)
			}
		})
	}
}

func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[h.Name] = "-> " + h.Linkname
		case tar.TypeDir:
			out[h.Name] = "dir"
		default:
			out[h.Name] = string(b)
		}
	}
}

func TestCLITarOutputs(t *testing.T) {
	e := newDirEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	e.must("init")
	e.must("snapshot", src)
	dir := t.TempDir()
	for _, name := range []string{"plain.tar", "gz.tar.gz", "old.tgz", "z.tar.zst"} {
		p := filepath.Join(dir, name)
		e.must("restore", "latest", "--tar", p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		switch {
		case strings.HasSuffix(name, "gz"):
			gz, err := gzip.NewReader(f)
			if err != nil {
				t.Fatalf("%s: not gzip: %v", name, err)
			}
			r = gz
		case strings.HasSuffix(name, ".zst"):
			zr, err := zstd.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		entries := readTar(t, r)
		f.Close()
		if entries["sub/b.txt"] != strings.Repeat("bravo ", 10000) || entries["link"] != "-> sub/b.txt" || entries["with space/"] != "dir" {
			t.Errorf("%s: unexpected entries %v", name, keys(entries))
		}
	}
	// Stdout.
	r := e.run("restore", "latest:sub/deeper", "--tar", "-")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if got := readTar(t, strings.NewReader(r.stdout)); got["deeper/c.md"] != "charlie" {
		t.Errorf("tar of a subtree to stdout: %v", keys(got))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCLIErrorsAndExitCodes(t *testing.T) {
	t.Run("missing repository", func(t *testing.T) {
		e := newDirEnv(t)
		r := e.run("snapshots")
		if r.code != 10 || !strings.Contains(r.stderr, "no repository") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("exit %d, stderr %q; want 10 and one line", r.code, r.stderr)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		e := newDirEnv(t)
		e.must("init")
		r := e.runWith([]string{"CAIRN_PASSWORD=nope"}, "snapshots")
		if r.code != 12 || !strings.Contains(r.stderr, "wrong password") {
			t.Errorf("exit %d, stderr %q; want 12", r.code, r.stderr)
		}
	})
	t.Run("no password", func(t *testing.T) {
		e := newDirEnv(t)
		e.must("init")
		r := e.runWith([]string{"CAIRN_PASSWORD_FILE=/nonexistent/pw"}, "snapshots")
		if r.code != 1 || !strings.Contains(r.stderr, "password file") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("init twice", func(t *testing.T) {
		e := newDirEnv(t)
		e.must("init")
		if r := e.run("init"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("second init: exit %d, %q", r.code, r.stderr)
		}
	})
	t.Run("bad selector", func(t *testing.T) {
		e := newDirEnv(t)
		e.must("init")
		if r := e.run("restore", "zz", "--target", t.TempDir()); r.code != 2 {
			t.Errorf("exit %d, %q; want 2", r.code, r.stderr)
		}
		if r := e.run("restore", "node:/p@latest", "--target", t.TempDir()); r.code != 1 || !strings.Contains(r.stderr, "no snapshot of node:/p") {
			t.Errorf("exit %d, %q", r.code, r.stderr)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		e := newS3Env(t) // the bucket is never created
		r := e.run("snapshots")
		if r.code != 11 || !strings.Contains(r.stderr, "bucket does not exist") {
			t.Errorf("exit %d, stderr %q; want 11", r.code, r.stderr)
		}
	})
	t.Run("bucket without repository", func(t *testing.T) {
		e := newS3Env(t)
		e.must("init")
		other := strings.Replace(e.get("CAIRN_REPO"), "/some/prefix", "/elsewhere", 1)
		r := e.runWith([]string{"CAIRN_REPO=" + other}, "snapshots")
		if r.code != 10 {
			t.Errorf("exit %d, stderr %q; want 10", r.code, r.stderr)
		}
	})
}

func TestCLICorruptPackIsNamed(t *testing.T) {
	e := newDirEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	noise := make([]byte, 200000)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(src, "noise.bin"), noise, 0o600); err != nil {
		t.Fatal(err)
	}
	e.must("init")
	e.must("snapshot", src)
	// Flip a byte in the middle of the pack holding file data.
	packs, _ := filepath.Glob(filepath.Join(e.get("CAIRN_REPO"), "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	var flipped []string
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 100000 { // the tree pack is small; leave it readable
			continue
		}
		b[len(b)/3] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		flipped = append(flipped, filepath.Base(p))
	}
	r := e.run("restore", "latest", "--target", t.TempDir())
	if r.code != 13 {
		t.Fatalf("exit %d, stderr %q; want 13", r.code, r.stderr)
	}
	named := false
	for _, f := range flipped {
		named = named || strings.Contains(r.stderr, f)
	}
	if !named {
		t.Errorf("error %q names none of the corrupted packs %v", r.stderr, flipped)
	}
	tarPath := filepath.Join(t.TempDir(), "x.tar")
	if r := e.run("restore", "latest", "--tar", tarPath); r.code != 13 {
		t.Errorf("tar restore: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(tarPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed tar restore left %s behind", tarPath)
	}
}

func TestCLIIndexLossAndRebuild(t *testing.T) {
	for _, kind := range []struct {
		name string
		new  func(*testing.T) *env
	}{{"dir", newDirEnv}, {"s3", newS3Env}} {
		t.Run(kind.name, func(t *testing.T) {
			e := kind.new(t)
			src := filepath.Join(t.TempDir(), "src")
			makeTree(t, src)
			e.must("init")
			e.must("snapshot", "--node", "n", src)
			os.WriteFile(filepath.Join(src, "new.txt"), []byte("new"), 0o644)
			e.must("snapshot", "--node", "n", src)
			before := e.must("snapshots")

			// Lost state: the next command rebuilds it from the bucket alone.
			if err := os.RemoveAll(e.get("CAIRN_STATE_DIR")); err != nil {
				t.Fatal(err)
			}
			if after := e.must("snapshots"); after != before {
				t.Errorf("history after losing the index:\n%s\nwant\n%s", after, before)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			e.must("restore", "n:"+src+"@1", "--target", dst)
			diffTrees(t, src, dst)

			out := e.must("index", "rebuild")
			if !strings.Contains(out, "2 snapshots") {
				t.Errorf("rebuild: %s", out)
			}
			dst2 := filepath.Join(t.TempDir(), "dst2")
			e.must("restore", "n:"+src+"@2", "--target", dst2)
			if _, err := os.Stat(filepath.Join(dst2, "new.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("version 2 should not hold new.txt")
			}
		})
	}
}

func TestCLIKeys(t *testing.T) {
	e := newDirEnv(t)
	e.must("init")
	r := e.runWith([]string{"CAIRN_NEW_PASSWORD=second"}, "key", "add")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	list := e.must("key", "list")
	if strings.Count(list, "\n") != 3 {
		t.Fatalf("key list:\n%s", list)
	}
	// The second password opens the repository too.
	if r := e.runWith([]string{"CAIRN_PASSWORD=second"}, "snapshots"); r.code != 0 {
		t.Fatalf("open with the added key: %s", r.stderr)
	}
	// Change the first password; the old one stops working.
	if r := e.runWith([]string{"CAIRN_NEW_PASSWORD=third"}, "key", "passwd"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := e.run("snapshots"); r.code != 12 {
		t.Errorf("old password after passwd: exit %d", r.code)
	}
	if r := e.runWith([]string{"CAIRN_PASSWORD=third"}, "snapshots"); r.code != 0 {
		t.Errorf("new password: %s", r.stderr)
	}
	// The key in use cannot be removed.
	var current string
	for _, line := range strings.Split(e.must2("third", "key", "list"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "*") {
			current = strings.Fields(line)[1]
		}
	}
	if r := e.runWith([]string{"CAIRN_PASSWORD=third"}, "key", "remove", current); r.code == 0 {
		t.Errorf("removing the key in use succeeded")
	}
	if r := e.runWith([]string{"CAIRN_PASSWORD=second"}, "key", "remove", current); r.code != 0 {
		t.Errorf("removing another key: %s", r.stderr)
	}
}

func (e *env) must2(pw string, args ...string) string {
	e.t.Helper()
	r := e.runWith([]string{"CAIRN_PASSWORD=" + pw}, args...)
	if r.code != 0 {
		e.t.Fatalf("cairn %v: %s", args, r.stderr)
	}
	return r.stdout
}
