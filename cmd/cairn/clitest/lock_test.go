package clitest

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIMachinesSharingABucket: two machines back up into one repository
// without a coordinator, each with its own local state. While one is
// backing up (a tar stream that is still arriving), the other's gc is
// refused with exit 14 and names the holder; once the backup ends, gc
// runs. A backup killed outright leaves a lock of a dead process, which
// blocks nothing on the same host and which unlock removes.
func TestCLIMachinesSharingABucket(t *testing.T) {
	for _, kind := range []struct {
		name string
		env  func(*testing.T) *env
	}{{"dir", newDirEnv}, {"s3", newS3Env}} {
		t.Run(kind.name, func(t *testing.T) {
			a := kind.env(t)
			b := &env{t: t, vars: append(append([]string{}, a.vars...), "CAIRN_STATE_DIR="+filepath.Join(t.TempDir(), "state-b"))}
			a.must("init")
			src := t.TempDir()
			makeTree(t, src)
			b.must("snapshot", "--node", "b", src)

			// start begins a backup of a tar stream on a and returns once
			// it is reading the stream: more than a pipe holds has been
			// written, and it reads only once it holds its lock.
			logPath := filepath.Join(t.TempDir(), "backup.log")
			backupSaid := func() string { b, _ := os.ReadFile(logPath); return string(b) }
			const size = 1 << 20
			start := func() (*exec.Cmd, *tar.Writer, func() error) {
				cmd := exec.CommandContext(context.Background(), cairnBin, "snapshot", "--node", "a", "--stdin-tar", "--path", "/streamed")
				cmd.Env = a.vars
				log, err := os.Create(logPath)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { log.Close() })
				cmd.Stderr = log
				in, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				tw := tar.NewWriter(in)
				if err := tw.WriteHeader(&tar.Header{Name: "file.bin", Mode: 0o644, Size: size}); err != nil {
					t.Fatal(err)
				}
				if _, err := tw.Write(make([]byte, size/2)); err != nil {
					t.Fatalf("the backup does not read its stream: %v\n%s", err, backupSaid())
				}
				return cmd, tw, in.Close
			}

			cmd, tw, closeIn := start()
			r := b.run("gc")
			if r.code != 14 || !strings.Contains(r.stderr, "shared lock for backup") || !strings.Contains(r.stderr, "cairn unlock") {
				t.Fatalf("gc beside a running backup: exit %d\n%s", r.code, r.stderr)
			}
			// b backs up beside it (shared locks coexist); the collection
			// its retention asks for waits, and the snapshot still counts.
			writeFile(t, filepath.Join(src, "changed"), "a new version of the tree")
			r = b.run("snapshot", "--node", "b", "--keep", "1", src)
			if r.code != 0 || !strings.Contains(r.stderr, "gc skipped") || !strings.Contains(r.stdout+r.stderr, "saved") {
				t.Fatalf("backup with retention beside a running backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if _, err := tw.Write(make([]byte, size/2)); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := closeIn(); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("the backup under the lock: %v\n%s", err, backupSaid())
			}
			b.must("gc")

			// A backup killed on this host leaves its lock, which the next
			// command here sees is a dead process's: gc runs, and unlock
			// clears the object.
			cmd, _, closeIn = start()
			if r := b.run("gc"); r.code != 14 {
				t.Fatalf("gc beside a second backup: exit %d\n%s", r.code, r.stderr)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			_ = closeIn()
			if r := b.run("gc"); r.code != 0 {
				t.Fatalf("gc beside a killed backup's lock: exit %d\n%s", r.code, r.stderr)
			}
			if out := b.must("unlock"); !strings.Contains(out, "removed shared lock for backup") {
				t.Fatalf("unlock left the killed backup's lock: %q", out)
			}
			if out := b.must("unlock", "--all"); strings.Contains(out, "removed") {
				t.Fatalf("unlock --all found another lock: %q", out)
			}
			b.must("gc")
		})
	}
}
