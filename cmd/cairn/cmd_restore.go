package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var target, tarPath, compress string
	var onNode bool
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT[:SUBPATH]",
		Short: "Restore a snapshot, a subtree or one file to a folder or as a tar archive",
		Long: `Restore a snapshot into --target DIR, or write it as a tar archive with
--tar FILE (use - for stdout). A .gz/.tgz or .zst name compresses the tar.

SNAPSHOT is one of:
  latest                        newest snapshot
  ID-PREFIX                     a snapshot ID (4+ hex digits)
  NODE:PATH@latest              newest snapshot of that node and path
  NODE:PATH@N                   N-th newest (1 is the newest)
  NODE:PATH@TIME                newest taken at or before TIME (2026-11-22T10:00)
followed by :SUBPATH (after @ forms, :/SUBPATH) to restore part of it.

With --coordinator (or CAIRN_COORDINATOR) the restore goes through the fleet
coordinator: --tar FILE streams the archive from it, --on-node --target DIR
has the snapshot's node restore in place (under its --restore-root).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.admin.url != "" {
				return restoreViaCoordinator(cmd.Context(), &g.admin, args[0], tarPath, target, onNode)
			}
			if onNode {
				return usageError{"--on-node restores through the coordinator: give --coordinator URL"}
			}
			if (target == "") == (tarPath == "") {
				return usageError{"give exactly one of --target DIR or --tar FILE"}
			}
			return runRestore(cmd.Context(), g, args[0], target, tarPath, compress)
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "restore into this folder")
	cmd.Flags().StringVar(&tarPath, "tar", "", "write a tar archive to this file (- for stdout)")
	cmd.Flags().StringVar(&compress, "compress", "", "tar compression: none, gzip or zstd (default: from the file name)")
	cmd.Flags().BoolVar(&onNode, "on-node", false, "with --coordinator: have the snapshot's node restore it in place into --target")
	return cmd
}

func runRestore(ctx context.Context, g *globals, selText, target, tarPath, compress string) error {
	l, sns, sels, err := g.openAndFind(ctx, selText)
	if err != nil {
		return err
	}
	defer l.Close()
	sn, sel := sns[0], sels[0]
	start := time.Now()
	if tarPath != "" {
		if err := writeTarFile(ctx, l, sn, sel.Sub, tarPath, compress); err != nil {
			return err
		}
		if tarPath != "-" {
			g.infof("wrote snapshot %s of %s:%s to %s in %s", sn.ID.Short(), sn.Node, sn.Path, tarPath, time.Since(start).Round(10*time.Millisecond))
		}
		return nil
	}
	var written atomic.Uint64
	st, err := agent.Restore(ctx, l.Repo, l.Index, sn, sel.Sub, agent.RestoreOptions{
		Target: target, BytesWritten: &written,
		OnWarning: func(p string, err error) { g.warnf("%s: %v", p, err) },
	})
	if err != nil {
		return err
	}
	g.infof("restored snapshot %s of %s:%s to %s: %d files (%s), %d dirs, %d symlinks, %d hard links in %s",
		sn.ID.Short(), sn.Node, sn.Path, target, st.Files, humanBytes(st.Bytes), st.Dirs, st.Symlinks, st.Hardlinks,
		time.Since(start).Round(10*time.Millisecond))
	return nil
}

func writeTarFile(ctx context.Context, l *agent.Local, sn *repoSnapshot, sub, path, compress string) (err error) {
	if compress == "" {
		switch {
		case strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".tgz"):
			compress = "gzip"
		case strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".tzst"):
			compress = "zstd"
		default:
			compress = "none"
		}
	}
	var out io.Writer = os.Stdout
	var file *os.File
	if path != "-" {
		// Written beside the target and renamed at the end: a failed
		// restore never leaves a truncated archive under the asked name.
		file, err = os.CreateTemp(filepath.Dir(path), ".cairn-tar-*")
		if err != nil {
			return fmt.Errorf("tar output: %w", err)
		}
		defer func() {
			if err != nil {
				file.Close()
				os.Remove(file.Name())
			}
		}()
		out = file
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	var w io.Writer = bw
	var closer io.Closer
	switch compress {
	case "none":
	case "gzip":
		gz := gzip.NewWriter(bw)
		w, closer = gz, gz
	case "zstd":
		zw, err := zstd.NewWriter(bw)
		if err != nil {
			return err
		}
		w, closer = zw, zw
	default:
		return usageError{fmt.Sprintf("--compress %q: want none, gzip or zstd", compress)}
	}
	if err := agent.WriteTar(ctx, l.Repo, l.Index, sn, sub, w); err != nil {
		return err
	}
	if closer != nil {
		if err := closer.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tar output: %w", err)
	}
	if file != nil {
		if err := file.Sync(); err != nil {
			return fmt.Errorf("tar output: %w", err)
		}
		if err := file.Close(); err != nil {
			return fmt.Errorf("tar output: %w", err)
		}
		if err := os.Rename(file.Name(), path); err != nil {
			return fmt.Errorf("tar output: %w", errors.Join(err, os.Remove(file.Name())))
		}
	}
	return nil
}
