package main

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

type repoSnapshot = repo.Snapshot

func newSnapshotsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshots [NODE[:PATH]]",
		Short: "List snapshots, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.openLocal(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			sns, err := l.Index.Snapshots()
			if err != nil {
				return err
			}
			var sel agent.Selector
			if len(args) == 1 {
				sel.Node, sel.Path, _ = strings.Cut(args[0], ":")
			}
			var out []*repo.Snapshot
			for _, sn := range sns {
				if sel.Matches(sn) {
					out = append(out, sn)
				}
			}
			w := stdoutWriter()
			defer w.Flush()
			if asJSON {
				type js struct {
					ID string `json:"id"`
					*repo.Snapshot
				}
				list := make([]js, len(out))
				for i, sn := range out {
					list[i] = js{string(sn.ID), sn}
				}
				return writeJSON(w, list)
			}
			fmt.Fprintf(w, "%-8s  %-19s  %-16s  %-30s  %9s  %10s  %10s\n", "ID", "TIME", "NODE", "PATH", "FILES", "SIZE", "ADDED")
			for _, sn := range out {
				s := sn.Summary
				fmt.Fprintf(w, "%-8s  %-19s  %-16s  %-30s  %9d  %10s  %10s\n", sn.ID.Short(), sn.Time.Local().Format("2006-01-02 15:04:05"),
					sn.Node, sn.Path, s.FilesNew+s.FilesChanged+s.FilesUnchanged, humanBytes(s.TotalSize), humanBytes(s.StoredAdded))
			}
			fmt.Fprintf(w, "%d snapshots\n", len(out))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLsCmd(g *globals) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls SNAPSHOT[:SUBPATH]",
		Short: "List the files in a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			l, sns, sels, err := g.openAndFind(ctx, args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			sel := sels[0]
			node, tree, err := agent.Resolve(ctx, l.Repo, l.Index, sns[0], sel.Sub)
			if err != nil {
				return err
			}
			w := stdoutWriter()
			defer w.Flush()
			print := func(p string, n *repo.Node) {
				if !long {
					fmt.Fprintln(w, p)
					return
				}
				h := agent.TarHeader(p, n)
				mode := fs.FileMode(n.Mode&0o777) | h.FileInfo().Mode().Type()
				owner := n.User
				if owner == "" {
					owner = fmt.Sprint(n.UID)
				}
				group := n.Group
				if group == "" {
					group = fmt.Sprint(n.GID)
				}
				extra := ""
				if n.Type == repo.NodeSymlink {
					extra = " -> " + n.LinkTarget
				}
				fmt.Fprintf(w, "%s %-8s %-8s %12d %s %s%s\n", mode, owner, group, n.Size,
					time.Unix(0, n.ModTime).Local().Format("2006-01-02 15:04:05"), p, extra)
			}
			base := "/" + strings.Trim(sel.Sub, "/")
			if node != nil && tree == nil {
				print(base, node)
				return nil
			}
			return walkTree(ctx, l, base, tree, print)
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show mode, owner, size and time")
	return cmd
}

func walkTree(ctx context.Context, l *agent.Local, dir string, t *repo.Tree, fn func(string, *repo.Node)) error {
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := path.Join(dir, n.Name)
		fn(p, n)
		if n.Type == repo.NodeDir {
			sub, err := agent.LoadTree(ctx, l.Repo, l.Index, n.Subtree)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := walkTree(ctx, l, p, sub, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func newStatsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show repository size, deduplication and packs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.openLocal(cmd.Context())
			if err != nil {
				return err
			}
			defer l.Close()
			st, err := agent.ComputeStats(l)
			if err != nil {
				return err
			}
			w := stdoutWriter()
			defer w.Flush()
			if asJSON {
				return writeJSON(w, st)
			}
			fmt.Fprintf(w, "repository:     %s (%s)\n", l.Repo.Location(), l.Repo.Config().ID[:8])
			fmt.Fprintf(w, "snapshots:      %d of %d node/paths\n", st.Snapshots, st.Series)
			fmt.Fprintf(w, "logical bytes:  %s (sum of all snapshots' file sizes)\n", humanBytes(st.LogicalBytes))
			fmt.Fprintf(w, "unique data:    %s in %d chunks, %d trees\n", humanBytes(st.UniqueBytes), st.DataBlobs, st.TreeBlobs)
			fmt.Fprintf(w, "stored bytes:   %s in %d packs\n", humanBytes(st.StoredBytes), st.Packs)
			fmt.Fprintf(w, "dedup ratio:    %.2fx (logical / stored)\n", st.DedupRatio)
			fmt.Fprintf(w, "compression:    %.2fx (unique / stored)\n", st.CompressionRatio)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
