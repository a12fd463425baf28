package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// Forget deletes snapshot objects and drops them from the catalog. Their
// data stays until garbage collection.
func (l *Local) Forget(ctx context.Context, ids []repo.SnapshotID) error {
	for _, id := range ids {
		if err := l.Repo.DeleteSnapshot(ctx, id); err != nil && !errors.Is(err, repo.ErrNotFound) {
			return fmt.Errorf("forget %s: %w", id.Short(), err)
		}
		if err := l.Index.DeleteSnapshot(id); err != nil {
			return err
		}
	}
	return l.Index.Flush()
}

// Retain applies policy p to every node/path series that sel matches (an
// empty selector matches all) and, unless dryRun, forgets what p does not
// keep. A selector that matches nothing is an error, as is a policy that
// would forget a whole series.
func (l *Local) Retain(ctx context.Context, sel Selector, p Policy, loc *time.Location, dryRun bool) ([]Decision, error) {
	sns, err := l.Index.Snapshots()
	if err != nil {
		return nil, err
	}
	var matched []*repo.Snapshot
	for _, sn := range sns {
		if sel.Matches(sn) {
			matched = append(matched, sn)
		}
	}
	if len(matched) == 0 {
		what := "the repository"
		if sel.Path != "" || sel.Node != "" {
			what = sel.Node + ":" + sel.Path
		}
		return nil, fmt.Errorf("no snapshots of %s to apply the policy to: %w", what, repo.ErrNotFound)
	}
	var all []Decision
	for _, group := range Series(matched) {
		ds, err := Apply(group, p, loc)
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
	}
	if dryRun {
		return all, nil
	}
	var forget []repo.SnapshotID
	for _, d := range all {
		if !d.Keep {
			forget = append(forget, d.Snapshot.ID)
		}
	}
	return all, l.Forget(ctx, forget)
}

// FreesData reports whether forgetting gone can have made any data
// unreachable: false when each of their root trees is also the root of a
// live snapshot, since then everything they reference still is.
func FreesData(l *Local, gone []*repo.Snapshot) (bool, error) {
	live, err := l.Index.Snapshots()
	if err != nil {
		return false, err
	}
	trees := map[chunk.ID]bool{}
	for _, sn := range live {
		trees[sn.Tree] = true
	}
	for _, sn := range gone {
		if !trees[sn.Tree] {
			return true, nil
		}
	}
	return false, nil
}
