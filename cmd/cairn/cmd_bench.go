package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/bench"
)

func newBenchCmd() *cobra.Command {
	var spec bench.Spec
	var change float64
	var reps int
	var realDir, nextDir, work, out, resticBin string
	var noPeers, dedup, quick bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure cairn (and restic, when found) on a synthetic or real tree",
		Long: `Run the benchmark scenarios (initial, no-change and next-version backups,
full and single-file restore, gc after forgetting one snapshot, and with
--dedup ten versions) for cairn and for every peer found (restic on PATH or
--restic), interleaved, --reps times, on local-folder repositories. Wall
time, CPU time and peak RSS are the kernel's accounting of each process.
Writes report.md, report.json and chart.svg into --out and prints the
Markdown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			tools := []bench.Tool{bench.Cairn{Bin: self}}
			if !noPeers {
				if resticBin != "" {
					tools = append(tools, bench.Restic{Bin: resticBin})
				} else {
					tools = append(tools, bench.FindPeers()...)
				}
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
			desc := fmt.Sprintf("Synthetic tree: %d files (seed %d, %.0f%% text, a %d MiB file every %d), %.1f%% changed per version; %d repetitions; local repositories; warm page cache.",
				spec.Files, spec.Seed, 100*spec.Compressible, max(spec.LargeSize, 1)>>20, spec.LargeEvery, 100*change, reps)
			if realDir != "" {
				data = func(dir string) error {
					return exec.Command("cp", "-a", realDir+"/.", dir).Run()
				}
				desc = fmt.Sprintf("Real tree %s, %.1f%% changed per version; %d repetitions; local repositories; warm page cache.", realDir, 100*change, reps)
			}
			next := func(dir string, i int) error {
				_, err := bench.Mutate(dir, bench.Change{Fraction: change, Seed: spec.Seed + uint64(i)})
				return err
			}
			if nextDir != "" {
				// The next version is a real tree (the next release):
				// the data set's folder is replaced by a copy of it.
				desc += fmt.Sprintf(" Next version: %s.", nextDir)
				next = func(dir string, _ int) error {
					if err := os.RemoveAll(dir); err != nil {
						return err
					}
					if err := os.MkdirAll(dir, 0o755); err != nil {
						return err
					}
					return exec.Command("cp", "-a", nextDir+"/.", dir).Run()
				}
			}
			ms, err := bench.Run(cmd.Context(), bench.Options{
				Tools: tools, Data: data, Reps: reps, Work: work, Dedup: dedup, Next: next,
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
	f.IntVar(&spec.LargeEvery, "large-every", 500, "every N-th file is large")
	f.IntVar(&spec.LargeSize, "large-size", 8<<20, "size of the large files in bytes")
	f.Float64Var(&change, "change", 0.01, "fraction of files changed per version")
	f.IntVar(&reps, "reps", 3, "repetitions of each tool")
	f.StringVar(&realDir, "dir", "", "benchmark a copy of this real folder instead")
	f.StringVar(&nextDir, "next-dir", "", "with --dir: the next version is a copy of this folder (e.g. the next release)")
	f.StringVar(&work, "work", "", "scratch folder (default: a temporary one)")
	f.StringVar(&out, "out", "", "write report.md, report.json and chart.svg here")
	f.StringVar(&resticBin, "restic", "", "restic binary (default: restic on PATH)")
	f.BoolVar(&noPeers, "no-peers", false, "measure cairn only")
	f.BoolVar(&dedup, "dedup", false, "also back up ten versions and report stored bytes")
	f.BoolVar(&quick, "quick", false, "a small tree, one repetition: checks the harness")
	return cmd
}
