package main

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
)

func newInitCmd(g *globals) *cobra.Command {
	var packMiB, keep int
	var ifMissing bool
	var minKiB, maxKiB, avgKiB uint
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repository (and its bucket, on S3)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			loc, err := g.location()
			if err != nil {
				return err
			}
			params, err := chunk.NewParams()
			if err != nil {
				return err
			}
			params.MinSize, params.MaxSize = minKiB<<10, maxKiB<<10
			params.AverageBits = bits.Len(avgKiB<<10) - 1
			if 1<<params.AverageBits != avgKiB<<10 {
				return usageError{"--chunk-avg must be a power of two (KiB)"}
			}
			if err := params.Validate(); err != nil {
				return usageError{err.Error()}
			}
			pw, err := g.password("new password for "+loc+": ", true)
			if err != nil {
				return err
			}
			st, err := backend.Open(ctx, loc, g.s3, true)
			if err != nil {
				return err
			}
			r, err := repo.Init(ctx, st, pw, repo.InitOptions{PackSize: packMiB << 20, Keep: keep, Chunker: &params})
			if errors.Is(err, repo.ErrRepositoryExists) && ifMissing {
				g.infof("repository at %s exists already", loc)
				return nil
			}
			if err != nil {
				return err
			}
			cfg := r.Config()
			fmt.Printf("created repository %s at %s\n", cfg.ID[:8], r.Location())
			fmt.Printf("chunks %s to %s (average %s), packs of %s, keeping %d snapshots per node and path\n",
				humanBytes(uint64(cfg.Chunker.MinSize)), humanBytes(uint64(cfg.Chunker.MaxSize)),
				humanBytes(1<<cfg.Chunker.AverageBits), humanBytes(uint64(cfg.PackSize)), cfg.Keep)
			fmt.Println("keep the password safe: without it the data cannot be read")
			return nil
		},
	}
	cmd.Flags().IntVar(&packMiB, "pack-size", repo.DefaultPackSize>>20, "target pack size in MiB")
	cmd.Flags().IntVar(&keep, "keep", repo.DefaultKeep, "snapshots kept per node and path by default")
	cmd.Flags().BoolVar(&ifMissing, "if-missing", false, "succeed without change when a repository exists already")
	cmd.Flags().UintVar(&minKiB, "chunk-min", chunk.DefaultMinSize>>10, "smallest chunk in KiB")
	cmd.Flags().UintVar(&avgKiB, "chunk-avg", 1<<(chunk.DefaultAverageBits-10), "average chunk in KiB (a power of two)")
	cmd.Flags().UintVar(&maxKiB, "chunk-max", chunk.DefaultMaxSize>>10, "largest chunk in KiB")
	return cmd
}
