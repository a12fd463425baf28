package clitest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFleetGCWhileBackingUp runs garbage collection in a loop while four
// agents back up changing trees every second for two minutes, then checks
// every blob and restores every snapshot.
func TestFleetGCWhileBackingUp(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	names := []string{"a1", "a2", "a3", "a4"}
	for _, n := range names {
		a := f.startAgent(n, time.Second, 3) // keep 3: retention makes garbage fast
		writeFile(t, filepath.Join(a.src, "static.txt"), "static "+n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg := f.writers(ctx)
	// Besides the state file, every agent gets a fresh 1 MiB file every few
	// seconds and loses an old one, so packs die and need repacking.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			for _, n := range names {
				b := make([]byte, 1<<20)
				rand.Read(b)
				src := f.agents[n].src
				os.WriteFile(filepath.Join(src, fmt.Sprintf("chunk%03d", i)), b, 0o644)
				os.Remove(filepath.Join(src, fmt.Sprintf("chunk%03d", i-3)))
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	deadline := time.Now().Add(gcTestDuration)
	runs, failed := 0, 0
	var freed int64
	for time.Now().Before(deadline) {
		var st struct {
			BytesFreed   int64  `json:"bytes_freed"`
			PacksDeleted int    `json:"packs_deleted"`
			Error        string `json:"error"`
		}
		if code := f.api("POST", "/v1/gc", f.admin, nil, &st); code != 200 {
			failed++
			if failed <= 3 {
				t.Logf("gc refused (%d): %s", code, st.Error)
			}
		} else {
			runs++
			freed += st.BytesFreed
		}
		time.Sleep(300 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for _, a := range f.agents {
		a.kill()
	}
	time.Sleep(500 * time.Millisecond)
	t.Logf("%d gc runs (%d refused), %d bytes freed while backing up", runs, failed, freed)
	if runs < 20 || freed == 0 || failed > runs/10 {
		t.Errorf("only %d gc runs freeing %d bytes: the test did not exercise collection", runs, freed)
	}
	total := 0
	for _, n := range names {
		total += len(f.history(n))
	}
	if total < 4*3 {
		t.Fatalf("only %d snapshots", total)
	}
	if c := f.cli("check", "--read-data"); !strings.Contains(c, "no problems found") {
		t.Fatalf("check after gc under load:\n%s", c)
	}
	for _, n := range names {
		for _, sn := range f.history(n) {
			out := filepath.Join(t.TempDir(), "s.tar.gz")
			f.cli("restore", sn.ID, "--tar", out)
			files := tarFiles(t, out)
			if string(files["static.txt"]) != "static "+n {
				t.Errorf("%s %s: static.txt = %q", n, sn.ID[:8], files["static.txt"])
			}
			checkStateFile(t, files["state.bin"])
		}
	}
	// Backups kept succeeding throughout.
	m := f.metrics()
	t.Logf("%s", grepLines(m, "cairn_backups_total"))
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// gcTestDuration is two minutes, as the fleet's promise says; the variable
// lets a developer shorten it while iterating (CAIRN_TEST_GC_SECONDS).
var gcTestDuration = func() time.Duration {
	if s := os.Getenv("CAIRN_TEST_GC_SECONDS"); s != "" {
		if d, err := time.ParseDuration(s + "s"); err == nil {
			return d
		}
	}
	return 2*time.Minute + 5*time.Second
}()
