package agent

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// Local is embedded mode: a repository and its local index in one process.
type Local struct {
	Repo  *repo.Repository
	Index *index.Index
}

// OpenLocal opens (or creates) the index in dir and brings it up to date
// with the repository. A missing or damaged index is rebuilt from the
// bucket here.
func OpenLocal(ctx context.Context, r *repo.Repository, dir string) (*Local, index.SyncStats, error) {
	ix, err := index.Open(dir, r.Config().ID)
	if err != nil {
		return nil, index.SyncStats{}, err
	}
	st, err := ix.Sync(ctx, r)
	if err != nil {
		ix.Close()
		return nil, st, fmt.Errorf("update index from %s: %w", r.Location(), err)
	}
	if rerr := ix.Recovered(); rerr != nil {
		st.Problems = append(st.Problems, fmt.Errorf("%w; moved aside to %s.damaged and rebuilt from the repository", rerr, dir))
	}
	return &Local{Repo: r, Index: ix}, st, nil
}

// Close closes the index.
func (l *Local) Close() error { return l.Index.Close() }

// Latest returns the newest snapshot of node and path, or nil.
func (l *Local) Latest(node, path string) (*repo.Snapshot, error) {
	sns, err := l.Index.Snapshots()
	if err != nil {
		return nil, err
	}
	for _, sn := range sns {
		if sn.Node == node && sn.Path == path {
			return sn, nil
		}
	}
	return nil, nil
}

// Snapshot backs up opts.Path with the newest snapshot of the same node and
// path as parent (unless opts.Parent is set), then records the snapshot in
// the catalog and syncs the index before returning.
func (l *Local) Snapshot(ctx context.Context, opts BackupOptions, noParent bool) (_ *repo.Snapshot, err error) {
	ctx, lk, err := l.Lock(ctx, "backup", false)
	if err != nil {
		return nil, err
	}
	defer unlock(ctx, lk, &err)
	if opts.Parent == nil && !noParent {
		p, err := l.Latest(opts.Node, opts.Path)
		if err != nil {
			return nil, err
		}
		opts.Parent = p
	}
	sn, err := Backup(ctx, l.Repo, l.Index, opts)
	if err != nil {
		return nil, err
	}
	if err := l.Index.PutSnapshot(sn); err != nil {
		return sn, err
	}
	return sn, l.Index.Flush()
}

// SnapshotTar stores the tar stream in as a snapshot of opts.Node and
// opts.Path, records it in the catalog and syncs the index.
func (l *Local) SnapshotTar(ctx context.Context, in io.Reader, opts BackupOptions) (_ *repo.Snapshot, err error) {
	ctx, lk, err := l.Lock(ctx, "backup", false)
	if err != nil {
		return nil, err
	}
	defer unlock(ctx, lk, &err)
	if opts.Parent == nil {
		p, err := l.Latest(opts.Node, opts.Path)
		if err != nil {
			return nil, err
		}
		opts.Parent = p
	}
	sn, err := BackupTar(ctx, l.Repo, l.Index, in, opts)
	if err != nil {
		return nil, err
	}
	if err := l.Index.PutSnapshot(sn); err != nil {
		return sn, err
	}
	return sn, l.Index.Flush()
}

// unlock releases lk. The loss of the lock during the work becomes the
// work's error. Failing to delete the lock does not: the work is done, and
// a lock left behind (append-only credentials cannot delete) only keeps
// other machines' collections out until it is stale.
func unlock(ctx context.Context, lk *RepoLock, err *error) {
	if cause := context.Cause(ctx); *err != nil && errors.Is(cause, ErrLockLost) {
		*err = fmt.Errorf("%w (%v)", cause, *err)
	}
	_ = lk.Unlock(ctx)
}

// Find resolves a selector against the catalog.
func (l *Local) Find(sel Selector) (*repo.Snapshot, error) {
	sns, err := l.Index.Snapshots()
	if err != nil {
		return nil, err
	}
	return sel.Find(sns)
}
