package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

type snapshotFlags struct {
	keep      int
	noGC      bool
	gc        gcFlags
	stdinTar  bool
	tarPath   string
	node      string
	rehash    bool
	excludes  []string
	tags      []string
	asJSON    bool
	noParent  bool
	uploaders int
}

func newSnapshotCmd(g *globals) *cobra.Command {
	var f snapshotFlags
	cmd := &cobra.Command{
		Use:     "snapshot PATH...",
		Aliases: []string{"backup"},
		Short:   "Back up directories or files; one snapshot per path",
		Long: `Back up each PATH as its own snapshot of this node and path. Files whose
type, size, mtime, ctime and inode equal the previous snapshot of the same
node and path are not read again; only new chunks are stored.

Unreadable or vanished files are reported and left out; the snapshot is
still saved and the exit code is 3.

After each snapshot the newest --keep snapshots of its node and path are
kept (default: the repository's, 10) and older ones forgotten; garbage
collection follows unless --no-gc.

With --stdin-tar the snapshot is read from a tar stream on standard input
(plain, gzip or zstd) and filed under --path NAME; each entry is chunked as
its own file, so a tar of unchanged data adds almost nothing.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case f.stdinTar && (len(args) > 0 || f.tarPath == ""):
				return usageError{"--stdin-tar reads the snapshot from standard input: give --path NAME and no PATH arguments"}
			case !f.stdinTar && len(args) == 0:
				return usageError{"give at least one PATH to back up (or --stdin-tar --path NAME)"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshot(cmd.Context(), g, f, args)
		},
	}
	host, _ := os.Hostname()
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", host, "node name the snapshot is filed under")
	fl.BoolVar(&f.rehash, "rehash", false, "read every file, even those that look unchanged")
	fl.StringArrayVarP(&f.excludes, "exclude", "e", nil, "leave out names matching this pattern (a pattern with / matches the path relative to PATH); repeatable")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the snapshot; repeatable")
	fl.BoolVar(&f.asJSON, "json", false, "print the summary as JSON")
	fl.BoolVar(&f.noParent, "no-parent", false, "do not compare with the previous snapshot (read everything)")
	fl.IntVar(&f.uploaders, "uploaders", 0, "packs uploaded at once (default 1 to a local folder, 2 to S3)")
	fl.IntVar(&f.keep, "keep", -1, "keep this many snapshots of the node and path, forget older (0: keep all; default: the repository's)")
	fl.BoolVar(&f.noGC, "no-gc", false, "do not collect garbage after retention")
	fl.BoolVar(&f.stdinTar, "stdin-tar", false, "read a tar stream (plain, gzip or zstd) from standard input")
	fl.StringVar(&f.tarPath, "path", "", "with --stdin-tar: the path the snapshot is filed under")
	f.gc.register(cmd)
	return cmd
}

type snapshotResult struct {
	ID      string       `json:"id"`
	Node    string       `json:"node"`
	Path    string       `json:"path"`
	Parent  string       `json:"parent,omitempty"`
	Time    time.Time    `json:"time"`
	Summary repo.Summary `json:"summary"`
}

func runSnapshot(ctx context.Context, g *globals, f snapshotFlags, paths []string) error {
	if f.node == "" {
		return usageError{"no node name: pass --node"}
	}
	l, err := g.openLocal(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	var errMu sync.Mutex
	var unreadable uint64
	onError := func(path string, err error) {
		errMu.Lock()
		defer errMu.Unlock()
		unreadable++
		fmt.Fprintf(os.Stderr, "\rerror: %s: %v\n", path, err)
	}
	onSkip := func(path, why string) {
		if !g.quiet {
			errMu.Lock()
			fmt.Fprintf(os.Stderr, "\rskipped: %s: %s\n", path, why)
			errMu.Unlock()
		}
	}
	report := func(sn *repo.Snapshot) error {
		res := snapshotResult{ID: string(sn.ID), Node: sn.Node, Path: sn.Path, Parent: string(sn.Parent), Time: sn.Time, Summary: sn.Summary}
		if f.asJSON {
			b, _ := json.Marshal(res)
			fmt.Println(string(b))
		} else {
			printSummary(res)
		}
		return retain(ctx, g, l, f, sn)
	}
	if f.stdinTar {
		sn, err := l.SnapshotTar(ctx, os.Stdin, agent.BackupOptions{
			Node: f.node, Path: f.tarPath, Tags: f.tags, Uploaders: f.uploaders, OnError: onError, OnSkip: onSkip,
		})
		if err != nil {
			return err
		}
		if err := report(sn); err != nil {
			return err
		}
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(abs); err != nil {
			return fmt.Errorf("snapshot %s: %w", p, err)
		}
		opts := agent.BackupOptions{
			Node: f.node, Path: abs, Rehash: f.rehash, Excludes: f.excludes, Tags: f.tags,
			Uploaders: f.uploaders, OnError: onError, OnSkip: onSkip,
		}
		stopProgress := func() {}
		// Progress costs a second walk of the tree (for the totals), so
		// only when someone watches it.
		if !g.quiet && !f.asJSON && stderrIsTerminal() {
			opts.Progress = &agent.Progress{}
			stopProgress = showProgress(opts.Progress, &errMu)
		}
		sn, err := l.Snapshot(ctx, opts, f.noParent)
		stopProgress()
		if err != nil {
			return err
		}
		if err := report(sn); err != nil {
			return err
		}
	}
	if unreadable > 0 {
		return partialError{fmt.Sprintf("%d files or directories could not be read; the snapshot was saved without them", unreadable)}
	}
	return nil
}

// retain applies the keep-newest-N rule to the snapshot's series and
// collects garbage when it forgot something.
func retain(ctx context.Context, g *globals, l *agent.Local, f snapshotFlags, sn *repo.Snapshot) error {
	keep := f.keep
	if keep < 0 {
		keep = l.Repo.Config().Keep
	}
	if keep == 0 {
		return nil
	}
	ds, err := l.Retain(ctx, agent.Selector{Node: sn.Node, Path: sn.Path}, agent.Policy{Last: keep}, time.Local, false)
	if err != nil {
		return err
	}
	var gone []*repo.Snapshot
	for _, d := range ds {
		if !d.Keep {
			gone = append(gone, d.Snapshot)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	g.infof("retention: forgot %d snapshots of %s:%s, keeping the newest %d", len(gone), sn.Node, sn.Path, keep)
	if f.noGC {
		return nil
	}
	freed, err := agent.FreesData(l, gone)
	if err != nil {
		return err
	}
	if !freed {
		// The usual nightly case of an unchanged tree: a collection would
		// walk every tree and blob (1M files: 5.6 s) to find nothing.
		g.infof("gc: skipped, every forgotten snapshot's tree is still in a live snapshot")
		return nil
	}
	err = runGC(ctx, g, l, f.gc.options(g, false))
	if errors.Is(err, agent.ErrLocked) {
		// The snapshot is saved; the space waits for a later collection.
		g.warnf("gc skipped: %v", err)
		return nil
	}
	return err
}

func printSummary(r snapshotResult) {
	s := r.Summary
	fmt.Printf("snapshot %s of %s:%s saved\n", r.ID[:8], r.Node, r.Path)
	fmt.Printf("  files:    %d new, %d changed, %d unchanged (%d dirs)\n", s.FilesNew, s.FilesChanged, s.FilesUnchanged, s.Dirs)
	fmt.Printf("  read:     %s of %s\n", humanBytes(s.BytesRead), humanBytes(s.TotalSize))
	fmt.Printf("  added:    %s (%s stored in %d packs)\n", humanBytes(s.BytesAdded), humanBytes(s.StoredAdded), s.Packs)
	fmt.Printf("  chunks:   %d new, %d reused; %d new trees\n", s.ChunksNew, s.ChunksReused, s.TreesNew)
	if s.Errors > 0 {
		fmt.Printf("  errors:   %d unreadable\n", s.Errors)
	}
	fmt.Printf("  duration: %s\n", time.Duration(s.DurationSec*float64(time.Second)).Round(10*time.Millisecond))
}

// showProgress redraws one status line on stderr until the returned func is
// called.
func showProgress(p *agent.Progress, mu *sync.Mutex) func() {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				mu.Lock()
				fmt.Fprint(os.Stderr, "\r\033[K")
				mu.Unlock()
				return
			case <-t.C:
			}
			el := time.Since(start)
			files, read, bdone := p.Files.Load(), p.BytesRead.Load(), p.BytesDone.Load()
			rate := float64(read) / el.Seconds()
			line := fmt.Sprintf("[%s] %d files, %s read, %s/s", humanDuration(el), files, humanBytes(read), humanBytes(uint64(rate)))
			if p.ScanDone.Load() {
				total := p.TotalBytes.Load()
				line += fmt.Sprintf(", %d/%d files", files, p.TotalFiles.Load())
				if total > 0 && bdone > 0 {
					pct := float64(bdone) / float64(total)
					if pct > 1 {
						pct = 1
					}
					eta := time.Duration(float64(el) / pct * (1 - pct))
					line += fmt.Sprintf(", %.0f%%, ETA %s", pct*100, humanDuration(eta))
				}
			}
			if e := p.Errors.Load(); e > 0 {
				line += fmt.Sprintf(", %d errors", e)
			}
			mu.Lock()
			fmt.Fprint(os.Stderr, "\r\033[K"+line)
			mu.Unlock()
		}
	}()
	return func() { close(done); wg.Wait() }
}
