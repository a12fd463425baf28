package clitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tarFiles reads a .tar.gz into name → content.
func tarFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
}

func TestFleetSchedulesKeepsTenAndRestores(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	for _, n := range []string{"web1", "web2", "db1"} {
		a := f.startAgent(n, time.Second, 0)
		writeFile(t, filepath.Join(a.src, "static.txt"), "unchanging "+n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg := f.writers(ctx)
	// 15 runs per path: wait until each has 10 snapshots and 15 runs done.
	start := time.Now()
	f.waitFor("15 backups of every path", 90*time.Second, func() bool {
		return time.Since(start) > 16*time.Second && func() bool {
			for n := range f.agents {
				if len(f.history(n)) < 10 {
					return false
				}
			}
			return true
		}()
	})
	cancel()
	wg.Wait()
	// Stop the agents so no new snapshot arrives while we count (a commit
	// and its retention are two steps).
	for _, a := range f.agents {
		a.kill()
	}
	time.Sleep(500 * time.Millisecond)
	metrics := f.metrics()
	if !strings.Contains(metrics, `cairn_backups_total{result="ok"}`) {
		t.Fatalf("metrics lack backup counts:\n%s", metrics)
	}
	for n, a := range f.agents {
		sns := f.history(n)
		if len(sns) != 10 {
			t.Errorf("%s has %d snapshots, want exactly 10", n, len(sns))
		}
		for i, sn := range sns {
			if sn.Path != a.src {
				t.Fatalf("snapshot of %s", sn.Path)
			}
			// Every version restores, through the coordinator, as .tar.gz.
			out := filepath.Join(t.TempDir(), "v.tar.gz")
			f.cli("restore", sn.ID, "--tar", out)
			files := tarFiles(t, out)
			if string(files["static.txt"]) != "unchanging "+n {
				t.Errorf("%s@%d: static.txt = %q", n, i+1, files["static.txt"])
			}
			checkStateFile(t, files["state.bin"])
		}
	}
	// Version selectors by node and path work through the coordinator too.
	a := f.agents["web1"]
	out := filepath.Join(t.TempDir(), "latest.tgz")
	f.cli("restore", "web1:"+a.src+"@3", "--tar", out)
	checkStateFile(t, tarFiles(t, out)["state.bin"])
	if !strings.Contains(metrics, "cairn_last_success_timestamp_seconds") || !strings.Contains(metrics, "cairn_dedup_ratio") {
		t.Errorf("metrics:\n%s", metrics)
	}
	// The admin commands read well.
	list := f.cli("node", "list")
	for _, n := range []string{"web1", "web2", "db1"} {
		if !strings.Contains(list, n) {
			t.Errorf("node list lacks %s:\n%s", n, list)
		}
	}
	if h := f.cli("history", "web2"); !strings.Contains(h, "10 snapshots") {
		t.Errorf("history:\n%s", h)
	}
	// And the whole repository checks out.
	if c := f.cli("check", "--read-data"); !strings.Contains(c, "no problems found") {
		t.Errorf("check:\n%s", c)
	}
}

func (f *fleet) metrics() string {
	req := f.coordURL + "/metrics"
	var b bytes.Buffer
	r, err := httpGet(req, f.admin)
	if err != nil {
		f.t.Fatal(err)
	}
	b.WriteString(r)
	return b.String()
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
