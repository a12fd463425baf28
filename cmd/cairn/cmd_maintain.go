package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

type gcFlags struct {
	repack float64
	grace  time.Duration
	force  bool
}

func (f *gcFlags) register(cmd *cobra.Command) {
	cmd.Flags().Float64Var(&f.repack, "repack-threshold", agent.DefaultRepackThreshold, "rewrite packs whose dead share is above this fraction")
	cmd.Flags().DurationVar(&f.grace, "grace", agent.DefaultGrace, "delete pack objects no index describes only when older than this")
	cmd.Flags().BoolVar(&f.force, "force", false, "collect even when the live set looks implausible")
}

func (f *gcFlags) options(g *globals, dryRun bool) agent.GCOptions {
	return agent.GCOptions{DryRun: dryRun, RepackThreshold: f.repack, Grace: f.grace, Force: f.force,
		Log: func(s string) { g.infof("gc: %s", s) }}
}

func runGC(ctx context.Context, g *globals, l *agent.Local, opts agent.GCOptions) error {
	st, err := agent.GC(ctx, l, opts)
	if err != nil {
		return err
	}
	if opts.DryRun {
		for _, line := range st.Plan {
			fmt.Println("would " + line)
		}
		fmt.Printf("would free %s: %d packs deleted, %d repacked, %d unindexed (%d live blobs, %d dead)\n",
			humanBytes(st.BytesFreed), st.PacksDeleted, st.PacksRepacked, st.PacksUnindexed, st.LiveBlobs, st.DeadBlobs)
		return nil
	}
	g.infof("gc: freed %s (wrote %s): %d packs deleted, %d repacked into %d, %d unindexed deleted, %d in grace; %d live blobs, %d dead",
		humanBytes(st.BytesFreed), humanBytes(st.BytesWritten), st.PacksDeleted, st.PacksRepacked, st.PacksWritten,
		st.PacksUnindexed, st.PacksInGrace, st.LiveBlobs, st.DeadBlobs)
	return nil
}

func newGCCmd(g *globals) *cobra.Command {
	var f gcFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete data no snapshot references; repack packs that are mostly dead",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.admin.url != "" {
				return gcViaCoordinator(cmd.Context(), &g.admin, dryRun)
			}
			l, err := g.openLocal(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			return runGC(cmd.Context(), g, l, f.options(g, dryRun))
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "show what would be deleted and the bytes reclaimed")
	return cmd
}

func newForgetCmd(g *globals) *cobra.Command {
	var p agent.Policy
	var f gcFlags
	var dryRun, noGC bool
	cmd := &cobra.Command{
		Use:   "forget [NODE[:PATH]] [--keep-last N] [--keep-daily N] ...",
		Short: "Forget snapshots a retention policy does not keep, then collect garbage",
		Long: `Apply a retention policy to every node/path series (or the one named) and
forget the snapshots it does not keep. A snapshot is kept when any rule keeps
it. A policy that would forget every snapshot of a series is refused.
Garbage collection follows unless --no-gc.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if p.Empty() {
				return usageError{"no policy: give at least one --keep-* flag"}
			}
			var sel agent.Selector
			if len(args) == 1 {
				sel.Node, sel.Path, _ = strings.Cut(args[0], ":")
			}
			l, err := g.openLocal(ctx)
			if err != nil {
				return err
			}
			defer l.Close()
			ds, err := l.Retain(ctx, sel, p, time.Local, dryRun)
			if err != nil {
				return err
			}
			verb := "forget"
			if dryRun {
				verb = "would forget"
			}
			forgotten := 0
			for _, d := range ds {
				sn := d.Snapshot
				if d.Keep {
					fmt.Printf("keep    %s  %s  %s:%s  (%s)\n", sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"), sn.Node, sn.Path, strings.Join(d.Reasons, ", "))
				} else {
					forgotten++
					fmt.Printf("%-7s %s  %s  %s:%s\n", verb, sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"), sn.Node, sn.Path)
				}
			}
			if dryRun || noGC || forgotten == 0 {
				return nil
			}
			return runGC(ctx, g, l, f.options(g, false))
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&p.Last, "keep-last", 0, "keep the N newest snapshots")
	fl.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours with one")
	fl.IntVar(&p.Daily, "keep-daily", 0, "... of each of the last N days")
	fl.IntVar(&p.Weekly, "keep-weekly", 0, "... of each of the last N ISO weeks")
	fl.IntVar(&p.Monthly, "keep-monthly", 0, "... of each of the last N months")
	fl.IntVar(&p.Yearly, "keep-yearly", 0, "... of each of the last N years")
	fl.DurationVar(&p.Within, "keep-within", 0, "keep everything within this duration of the newest snapshot (e.g. 72h)")
	fl.BoolVarP(&dryRun, "dry-run", "n", false, "show what would be forgotten and why, change nothing")
	fl.BoolVar(&noGC, "no-gc", false, "do not collect garbage afterwards")
	f.register(cmd)
	return cmd
}

func newUnlockCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove repository locks left by processes that died",
		Long: `A backup holds a shared lock on the repository, and garbage collection an
exclusive one, so that machines sharing a bucket without a coordinator never
collect what another is backing up. A process that dies leaves its lock
behind; others ignore it once it is 30 minutes old. unlock removes such
stale locks now, and with --all every lock of another process: only when
no other cairn uses the repository.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			// Held open while removing, the index tells locks of earlier
			// holders of it (dead, then) from a live process's.
			var instance string
			if dir, err := g.indexDir(r.Config().ID); err == nil {
				if ix, err := index.Open(dir, r.Config().ID); err == nil {
					defer ix.Close()
					instance = ix.Instance()
				}
			}
			removed, err := agent.RemoveLocks(cmd.Context(), r, instance, all)
			for _, o := range removed {
				kind := "shared"
				if o.Exclusive {
					kind = "exclusive"
				}
				fmt.Printf("removed %s lock for %s by %s@%s (pid %d) of %s\n", kind, o.Op, o.User, o.Host, o.PID, o.Time.Local().Format("2006-01-02 15:04:05"))
			}
			if err == nil && len(removed) == 0 {
				g.infof("no lock to remove")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every lock of another process, not only stale ones")
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var readData bool
	var subset string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository: indexes, packs, snapshots and trees; --read-data verifies every blob",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := agent.CheckOptions{ReadData: readData || subset != "", Log: func(s string) { g.infof("check: %s", s) }}
			if subset != "" {
				sel, err := parseSubset(subset)
				if err != nil {
					return usageError{err.Error()}
				}
				opts.ReadPack = sel
			}
			l, err := g.openLocal(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			rep, err := agent.Check(cmd.Context(), l, opts)
			if err != nil {
				return err
			}
			if asJSON {
				w := stdoutWriter()
				defer w.Flush()
				if err := writeJSON(w, rep); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Printf("error: %s: %s\n", p.Object, p.Error)
				}
				fmt.Printf("checked %d snapshots, %d trees, %d chunks, %d packs", rep.Snapshots, rep.Trees, rep.DataBlobs, rep.Packs)
				if opts.ReadData {
					fmt.Printf(" (%d packs read, %d blobs verified)", rep.PacksRead, rep.BlobsRead)
				}
				fmt.Println()
				if rep.Unreferenced > 0 {
					fmt.Printf("%d packs no index references (left by interrupted runs; gc deletes them after the grace period)\n", rep.Unreferenced)
				}
			}
			if !rep.Healthy() {
				return corruptError{fmt.Sprintf("%d problems found", len(rep.Problems))}
			}
			if !asJSON {
				fmt.Println("no problems found")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "download and verify every blob")
	cmd.Flags().StringVar(&subset, "read-data-subset", "", "read only part of the packs: n/t (the n-th of t groups) or p% (random)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func parseSubset(s string) (func(repo.PackID) bool, error) {
	if strings.HasSuffix(s, "%") {
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || f <= 0 || f > 100 {
			return nil, fmt.Errorf("--read-data-subset %q: want a percentage in (0, 100]", s)
		}
		return agent.SubsetFraction(f / 100), nil
	}
	a, b, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(a)
	t, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || t < 1 || n < 1 || n > t || t > 256 {
		return nil, fmt.Errorf("--read-data-subset %q: want n/t with 1 <= n <= t <= 256, or p%%", s)
	}
	return agent.SubsetNth(n, t), nil
}

func newDiffCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff SNAPSHOT1 SNAPSHOT2",
		Short: "List paths added (+), removed (-), modified (M), with changed metadata (U) between two snapshots",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			l, sns, _, err := g.openAndFind(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			defer l.Close()
			w := stdoutWriter()
			defer w.Flush()
			counts := map[byte]int{}
			var added, removed int64
			err = agent.Diff(ctx, l.Repo, l.Index, sns[0], sns[1], func(c agent.Change) error {
				counts[c.Kind]++
				added += int64(c.NewSize)
				removed += int64(c.OldSize)
				if asJSON {
					return writeJSONLine(w, c)
				}
				switch c.Kind {
				case 'M':
					_, err := fmt.Fprintf(w, "M  %s (%d -> %d bytes)\n", c.Path, c.OldSize, c.NewSize)
					return err
				case '+':
					_, err := fmt.Fprintf(w, "+  %s (%d bytes)\n", c.Path, c.NewSize)
					return err
				case '-':
					_, err := fmt.Fprintf(w, "-  %s (%d bytes)\n", c.Path, c.OldSize)
					return err
				}
				_, err := fmt.Fprintf(w, "%c  %s\n", c.Kind, c.Path)
				return err
			})
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(w, "%d added, %d removed, %d modified, %d metadata changed\n", counts['+'], counts['-'], counts['M'], counts['U'])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per change")
	return cmd
}

// corruptError marks a repository found unhealthy.
type corruptError struct{ msg string }

func (e corruptError) Error() string { return e.msg }

func gcViaCoordinator(ctx context.Context, a *adminFlags, dryRun bool) error {
	cl, err := a.client(0)
	if err != nil {
		return err
	}
	p := "/v1/gc"
	if dryRun {
		p += "?dry_run=1"
	}
	var st agent.GCStats
	if err := cl.Do(ctx, "POST", p, nil, &st); err != nil {
		return err
	}
	fmt.Printf("gc at the coordinator: freed %s, %d packs deleted, %d repacked, %d live blobs, %d dead\n",
		humanBytes(st.BytesFreed), st.PacksDeleted, st.PacksRepacked, st.LiveBlobs, st.DeadBlobs)
	return nil
}
