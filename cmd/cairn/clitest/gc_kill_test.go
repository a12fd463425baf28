package clitest

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeGeneration rewrites a quarter of the files of src, so each snapshot
// leaves data for garbage collection to delete or repack.
func writeGeneration(t *testing.T, src string, gen int) {
	t.Helper()
	for i := range 24 {
		if gen > 0 && i%4 != gen%4 {
			continue
		}
		b := make([]byte, 300<<10)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGCSurvivesKill9 kills `cairn gc` at random moments, 20 times, and
// checks after each that every blob of every snapshot is still there and
// sound; then an uninterrupted run completes and the newest snapshot
// restores byte for byte.
func TestGCSurvivesKill9(t *testing.T) {
	for _, kind := range []struct {
		name string
		new  func(*testing.T) *env
	}{{"dir", newDirEnv}, {"s3", newS3Env}} {
		t.Run(kind.name, func(t *testing.T) {
			e := kind.new(t)
			src := filepath.Join(t.TempDir(), "src")
			os.MkdirAll(src, 0o755)
			e.must("init", "--pack-size", "1")
			writeGeneration(t, src, 0)
			e.must("snapshot", "-q", "--keep", "0", src)
			rnd := mrand.New(mrand.NewPCG(42, uint64(len(kind.name))))
			killed := 0
			// Kill times are drawn inside the last observed run time, which
			// adapts to the machine and the store.
			runTime := 400 * time.Millisecond
			for round := 1; round <= 20; round++ {
				writeGeneration(t, src, round)
				e.must("snapshot", "-q", "--keep", "0", src)
				e.must("forget", "-q", "--keep-last", "2", "--no-gc")
				cmd := exec.Command(cairnBin, "gc", "-q", "--grace", "1ns")
				cmd.Env = append(append([]string{}, e.vars...), "PATH="+os.Getenv("PATH"))
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				delay := time.Duration(float64(runTime) * (0.2 + 0.7*rnd.Float64()))
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-time.After(delay):
					cmd.Process.Kill()
					<-done
					killed++
				case <-done:
					runTime = time.Since(start)
				}
				r := e.run("check", "--read-data")
				if r.code != 0 {
					t.Fatalf("round %d (killed after %v): check --read-data exit %d:\n%s%s", round, delay, r.code, r.stdout, r.stderr)
				}
			}
			t.Logf("%d of 20 gc runs killed mid-way", killed)
			if killed < 10 {
				t.Errorf("only %d runs were killed mid-way; the test is too gentle", killed)
			}
			out := e.run("gc", "--grace", "1ns")
			if out.code != 0 {
				t.Fatalf("final gc: %s", out.stderr)
			}
			check := e.must("check", "--read-data")
			if strings.Contains(check, "packs no index references") {
				t.Errorf("packs left unreferenced after a full gc:\n%s", check)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			e.must("restore", "latest", "--target", dst)
			diffTrees(t, src, dst)
		})
	}
}
