package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/index"
)

func newIndexCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "index", Short: "Manage the local index"}
	rebuild := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the local index from the repository alone",
		Long: `Discard the local index and rebuild it from the repository: every index
object, the table of contents of every pack no index object describes, and
every snapshot object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			dir, err := g.indexDir(r.Config().ID)
			if err != nil {
				return err
			}
			ix, err := index.Open(dir, r.Config().ID)
			if err != nil {
				return err
			}
			defer ix.Close()
			st, err := ix.Rebuild(ctx, r)
			if err != nil {
				return err
			}
			for _, p := range st.Problems {
				g.warnf("%v", p)
			}
			fmt.Printf("rebuilt index in %s: %d index objects (%d packs), %d packs read directly, %d snapshots\n",
				dir, st.IndexObjects, st.PacksFromIndex, st.PacksScanned, st.Snapshots)
			if len(st.Problems) > 0 {
				return fmt.Errorf("%d objects could not be read", len(st.Problems))
			}
			return nil
		},
	}
	cmd.AddCommand(rebuild)
	return cmd
}
