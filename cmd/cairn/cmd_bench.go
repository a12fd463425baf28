package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/bench"
	"github.com/cairn-backup/cairn/repo"
)

func newBenchCmd() *cobra.Command {
	var spec bench.Spec
	var change float64
	var reps int
	var realDir, work, restoreDir, out, resticBin, kopiaBin, s3Endpoint, s3Bucket string
	var nextDirs []string
	var noPeers, dedup, quick, noLocal, fleet bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure cairn (and restic and kopia, when found) on a synthetic or real tree",
		Long: `Run the benchmark scenarios (initial, no-change and next-version backups,
full and single-file restore, gc after forgetting one snapshot, and with
--dedup ten versions) for cairn and for every peer found (restic and
kopia on PATH, or --restic and --kopia), interleaved, --reps times, on
local-folder repositories and, with --s3, in a bucket on that S3 server
(MinIO; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Tools reach the server
through a proxy that counts requests and bytes each way. Wall time, CPU
time and peak RSS are the kernel's accounting of each process. Writes
report.md, report.json and chart.svg into --out and prints the Markdown.

Real releases as versions: --dir go1.24.0 --next-dir go1.24.1 ...
--next-dir go1.24.9 backs up each folder in turn.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			tools := []bench.Tool{bench.Cairn{Bin: self}}
			if fleet {
				tools = append(tools, &bench.Fleet{Bin: self, RestoreDir: restoreDir})
			}
			if !noPeers {
				tools = append(tools, bench.FindPeers(resticBin, kopiaBin)...)
			}
			if quick {
				spec.Files, reps = 300, 1
				spec.LargeEvery, spec.LargeSize = 100, 2<<20
			}
			if work == "" {
				if work, err = os.MkdirTemp("", "cairn-bench-"); err != nil {
					return err
				}
				defer os.RemoveAll(work)
			}
			data := func(dir string) error {
				_, err := bench.Generate(dir, spec)
				return err
			}
			desc := fmt.Sprintf("Synthetic tree: %d files (seed %d, %.0f%% text, a %d MiB file every %d), %.1f%% changed per version; %d repetitions; warm page cache.",
				spec.Files, spec.Seed, 100*spec.Compressible, max(spec.LargeSize, 1)>>20, spec.LargeEvery, 100*change, reps)
			if realDir != "" {
				data = func(dir string) error {
					return exec.Command("cp", "-a", realDir+"/.", dir).Run()
				}
				desc = fmt.Sprintf("Real tree %s, %.1f%% changed per version; %d repetitions; warm page cache.", realDir, 100*change, reps)
			}
			// The same binary runs every cairn scenario; how it was built
			// moves the backup figures (see README).
			desc += " cairn compresses with " + repo.Compressor + "."
			if restoreDir != "" {
				if err := os.MkdirAll(restoreDir, 0o700); err != nil {
					return err
				}
				desc += fmt.Sprintf(" Restores into %s.", restoreDir)
			}
			next := func(dir string, i int) error {
				_, err := bench.Mutate(dir, bench.Change{Fraction: change, Seed: spec.Seed + uint64(i)})
				return err
			}
			if len(nextDirs) > 0 {
				// Version i is a copy of the i-th --next-dir (the next
				// release); past the last one, the synthetic change model.
				desc += fmt.Sprintf(" Next versions: %s.", strings.Join(nextDirs, ", "))
				mutate := next
				next = func(dir string, i int) error {
					if i > len(nextDirs) {
						return mutate(dir, i)
					}
					if err := os.RemoveAll(dir); err != nil {
						return err
					}
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
					return exec.Command("cp", "-a", nextDirs[i-1]+"/.", dir).Run()
				}
			}
			var targets []bench.Target
			if !noLocal {
				targets = append(targets, bench.LocalTarget)
			}
			if s3Endpoint != "" {
				ak, sk := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
				if ak == "" || sk == "" {
					return usageError{"--s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}
				}
				targets = append(targets, bench.Target{Name: "s3", S3: &bench.S3Endpoint{Endpoint: s3Endpoint, Bucket: s3Bucket, AccessKey: ak, SecretKey: sk}})
				desc += fmt.Sprintf(" S3: %s, bucket %s.", s3Endpoint, s3Bucket)
			}
			if len(targets) == 0 {
				return usageError{"--no-local without --s3 leaves nothing to measure"}
			}
			ms, err := bench.Run(cmd.Context(), bench.Options{
				Tools: tools, Data: data, Reps: reps, Work: work, RestoreDir: restoreDir, Dedup: dedup, Next: next, Targets: targets,
				Log: func(s string) { fmt.Fprintln(os.Stderr, "bench:", s) },
			})
			if err != nil {
				return err
			}
			rep := &bench.Report{Title: "cairn bench", Data: desc, Measures: ms, Stats: bench.Summarise(ms)}
			if out != "" {
				if err := rep.WriteFiles(out); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "wrote %s\n", filepath.Join(out, "report.md"))
			}
			rep.Markdown(os.Stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.Files, "files", 10000, "files in the synthetic tree")
	f.Uint64Var(&spec.Seed, "seed", 1, "seed of the synthetic tree and its changes")
	f.Float64Var(&spec.Compressible, "text", 0.6, "fraction of files holding text-like data")
	f.IntVar(&spec.SmallMax, "small-max", 32<<10, "small files are 0 to this many bytes")
	f.IntVar(&spec.LargeEvery, "large-every", 500, "every N-th file is large")
	f.IntVar(&spec.LargeSize, "large-size", 8<<20, "size of the large files in bytes")
	f.Float64Var(&change, "change", 0.01, "fraction of files changed per version")
	f.IntVar(&reps, "reps", 3, "repetitions of each tool")
	f.StringVar(&realDir, "dir", "", "benchmark a copy of this real folder instead")
	f.StringArrayVar(&nextDirs, "next-dir", nil, "with --dir: version N is a copy of the N-th --next-dir (e.g. the next releases); repeatable")
	f.StringVar(&s3Endpoint, "s3", "", "also measure with repositories on this S3 server (HOST:PORT, plain http)")
	f.StringVar(&s3Bucket, "s3-bucket", "cairn-bench", "bucket for --s3 (created if missing)")
	f.BoolVar(&noLocal, "no-local", false, "with --s3: skip the local-folder repositories")
	f.BoolVar(&fleet, "fleet", false, "also measure fleet mode: a coordinator and an agent as daemons, backups by backup-now --wait, restores on the node; the report gives each process's peak RSS")
	f.StringVar(&work, "work", "", "scratch folder (default: a temporary one)")
	f.StringVar(&restoreDir, "restore-dir", "", "restore into this folder instead of the scratch folder (a tmpfs such as /dev/shm measures the tools, not the disk's state)")
	f.StringVar(&out, "out", "", "write report.md, report.json and chart.svg here")
	f.StringVar(&resticBin, "restic", "", "restic binary (default: restic on PATH)")
	f.StringVar(&kopiaBin, "kopia", "", "kopia binary (default: kopia on PATH; scripts/kopia.sh builds one)")
	f.BoolVar(&noPeers, "no-peers", false, "measure cairn only")
	f.BoolVar(&dedup, "dedup", false, "also back up ten versions and report stored bytes")
	f.BoolVar(&quick, "quick", false, "a small tree, one repetition: checks the harness")
	return cmd
}
