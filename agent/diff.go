package agent

import (
	"context"
	"path"
	"slices"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// Change is one difference between two snapshots.
type Change struct {
	Kind    byte   `json:"-"` // '+' added, '-' removed, 'M' content changed, 'U' metadata only, 'T' type changed
	What    string `json:"change"`
	Path    string `json:"path"`
	Type    string `json:"type"`
	OldSize uint64 `json:"old_size"`
	NewSize uint64 `json:"new_size"`
}

var changeNames = map[byte]string{'+': "added", '-': "removed", 'M': "modified", 'U': "metadata", 'T': "type"}

// Diff calls fn for every path that differs between snapshots a and b, in
// path order. Subtrees with equal IDs are skipped without being read.
func Diff(ctx context.Context, r *repo.Repository, ix blobIndex, a, b *repo.Snapshot, fn func(Change) error) error {
	d := &differ{r: r, ix: ix, fn: fn}
	return d.trees(ctx, "/", a.Tree, b.Tree)
}

type differ struct {
	r  *repo.Repository
	ix blobIndex
	fn func(Change) error
}

func (d *differ) emit(kind byte, p string, n *repo.Node, old, new uint64) error {
	return d.fn(Change{Kind: kind, What: changeNames[kind], Path: p, Type: n.Type.String(), OldSize: old, NewSize: new})
}

func (d *differ) trees(ctx context.Context, dir string, a, b chunk.ID) error {
	if a == b {
		return nil
	}
	ta, tb := &repo.Tree{}, &repo.Tree{}
	var err error
	if !a.IsZero() {
		if ta, err = LoadTree(ctx, d.r, d.ix, a); err != nil {
			return err
		}
	}
	if !b.IsZero() {
		if tb, err = LoadTree(ctx, d.r, d.ix, b); err != nil {
			return err
		}
	}
	i, j := 0, 0
	for i < len(ta.Nodes) || j < len(tb.Nodes) {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case j == len(tb.Nodes) || (i < len(ta.Nodes) && ta.Nodes[i].Name < tb.Nodes[j].Name):
			if err := d.side(ctx, '-', dir, &ta.Nodes[i]); err != nil {
				return err
			}
			i++
		case i == len(ta.Nodes) || tb.Nodes[j].Name < ta.Nodes[i].Name:
			if err := d.side(ctx, '+', dir, &tb.Nodes[j]); err != nil {
				return err
			}
			j++
		default:
			if err := d.both(ctx, dir, &ta.Nodes[i], &tb.Nodes[j]); err != nil {
				return err
			}
			i, j = i+1, j+1
		}
	}
	return nil
}

// side reports a node (and everything under it) present on one side only.
func (d *differ) side(ctx context.Context, kind byte, dir string, n *repo.Node) error {
	p := path.Join(dir, n.Name)
	old, new := n.Size, uint64(0)
	if kind == '+' {
		old, new = 0, n.Size
	}
	if err := d.emit(kind, p, n, old, new); err != nil {
		return err
	}
	if n.Type != repo.NodeDir {
		return nil
	}
	if kind == '+' {
		return d.trees(ctx, p, chunk.ID{}, n.Subtree)
	}
	return d.trees(ctx, p, n.Subtree, chunk.ID{})
}

func (d *differ) both(ctx context.Context, dir string, a, b *repo.Node) error {
	p := path.Join(dir, a.Name)
	if a.Type != b.Type {
		if err := d.side(ctx, '-', dir, a); err != nil {
			return err
		}
		return d.side(ctx, '+', dir, b)
	}
	switch a.Type {
	case repo.NodeDir:
		return d.trees(ctx, p, a.Subtree, b.Subtree)
	case repo.NodeFile:
		if a.Size != b.Size || !slices.Equal(a.Content, b.Content) {
			return d.emit('M', p, b, a.Size, b.Size)
		}
	case repo.NodeSymlink:
		if a.LinkTarget != b.LinkTarget {
			return d.emit('M', p, b, 0, 0)
		}
	}
	if a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.ModTime != b.ModTime {
		return d.emit('U', p, b, a.Size, b.Size)
	}
	return nil
}
