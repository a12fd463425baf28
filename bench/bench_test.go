package bench_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/bench"
	"github.com/cairn-backup/cairn/repo/storetest"
)

func TestGenerateAndMutateAreDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	spec := bench.Spec{Files: 120, Seed: 5, LargeEvery: 50, LargeSize: 100000, Compressible: 0.5}
	na, err := bench.Generate(a, spec)
	if err != nil {
		t.Fatal(err)
	}
	nb, _ := bench.Generate(b, spec)
	if na != nb || na == 0 {
		t.Fatalf("sizes %d and %d", na, nb)
	}
	ca, _ := bench.Mutate(a, bench.Change{Fraction: 0.2, Seed: 9})
	cb, _ := bench.Mutate(b, bench.Change{Fraction: 0.2, Seed: 9})
	if ca != cb || ca != 24 {
		t.Fatalf("changed %d and %d files, want 24", ca, cb)
	}
	out, err := exec.Command("diff", "-r", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("same seed, different trees: %s", out)
	}
}

// TestQuickRun is the harness's quick mode inside `make test`, so it never
// rots: a small tree, one repetition, cairn and any peer on PATH, on local
// folders and on the test MinIO.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cairn-backup/cairn/cmd/cairn").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// Restores go to their own folder, as onto a tmpfs.
	restores := filepath.Join(dir, "restores")
	if err := os.MkdirAll(restores, 0o700); err != nil {
		t.Fatal(err)
	}
	tools := append([]bench.Tool{bench.Cairn{Bin: bin}, &bench.Fleet{Bin: bin, RestoreDir: restores}}, bench.FindPeers("", "")...)
	s3cfg := storetest.MinIOConfig(t)
	targets := []bench.Target{bench.LocalTarget, {Name: "minio", S3: &bench.S3Endpoint{
		Endpoint: s3cfg.Endpoint, Bucket: s3cfg.Bucket, AccessKey: s3cfg.AccessKey, SecretKey: s3cfg.SecretKey}}}
	spec := bench.Spec{Files: 200, Seed: 1, LargeEvery: 100, LargeSize: 1 << 20, Compressible: 0.5}
	ms, err := bench.Run(context.Background(), bench.Options{
		Tools: tools, Reps: 1, Work: filepath.Join(dir, "work"), RestoreDir: restores, Dedup: true, Targets: targets,
		Data: func(d string) error { _, err := bench.Generate(d, spec); return err },
		Next: func(d string, i int) error {
			_, err := bench.Mutate(d, bench.Change{Fraction: 0.05, Seed: uint64(i)})
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(restores); len(left) > 0 {
		t.Errorf("restores left behind in %s: %v", restores, left)
	}
	stats := bench.Summarise(ms)
	if len(stats) != len(bench.Scenarios)*len(tools)*len(targets) {
		t.Fatalf("%d summaries for %d tools on %d targets", len(stats), len(tools), len(targets))
	}
	for _, s := range stats {
		if s.WallMed <= 0 || s.MaxRSS <= 0 || s.Stored <= 0 {
			t.Errorf("%s %s on %s: empty figures %+v", s.Tool, s.Scenario, s.Target, s)
		}
		// Every scenario talks to the store; backups send data.
		if onS3 := s.Target == "minio"; onS3 != (s.Requests > 0) {
			t.Errorf("%s %s on %s: %d store requests counted", s.Tool, s.Scenario, s.Target, s.Requests)
		}
		// What the repository's creation wrote (kopia: format, policies;
		// a few KiB) is stored but was not sent by the backup.
		if s.Target == "minio" && s.Scenario == bench.ScInitial && s.Sent < s.Stored-64<<10 {
			t.Errorf("%s initial backup on minio: %d bytes sent, %d stored", s.Tool, s.Sent, s.Stored)
		}
		// Fleet mode: the coordinator's and the agent's peak RSS.
		if s.Tool == "cairn-fleet" && (s.Procs["coordinator"] <= 0 || s.Procs["agent"] <= 0) {
			t.Errorf("cairn-fleet %s on %s: daemon peak RSS %v", s.Scenario, s.Target, s.Procs)
		}
	}
	rep := &bench.Report{Title: "quick", Data: "test", Measures: ms, Stats: stats}
	out := filepath.Join(dir, "out")
	if err := rep.WriteFiles(out); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	svg, _ := os.ReadFile(filepath.Join(out, "chart.svg"))
	for _, sc := range bench.Scenarios {
		if !strings.Contains(string(md), sc) {
			t.Errorf("report lacks %q", sc)
		}
	}
	if !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "initial backup") {
		t.Errorf("chart is not an SVG of the scenarios")
	}
	t.Logf("\n%s", md)
}
