package agent

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// tarReadahead bounds the chunk data fetched ahead of the tar writer.
const tarReadahead = 64 << 20

type tarChunk struct {
	loc  repo.BlobEntry
	pack repo.PackID
	data []byte
	err  error
	done chan struct{}
}

type tarItem struct {
	hdr    *tar.Header
	chunks []*tarChunk
}

// WriteTar streams the snapshot (or its subpath sub) to w as a POSIX tar
// archive with PAX records for nanosecond times and long names. Names are
// relative to the snapshot's path (or to sub's parent when sub names a
// file). Chunks are fetched by parallel workers ahead of the writer and
// each is verified before it is written.
func WriteTar(ctx context.Context, r *repo.Repository, ix blobIndex, sn *repo.Snapshot, sub string, w io.Writer) error {
	node, tree, err := Resolve(ctx, r, ix, sn, sub)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	items := make(chan *tarItem, 256)
	fetches := make(chan *tarChunk, 256)
	sem := semaphore.NewWeighted(tarReadahead)

	for range 4 {
		g.Go(func() error {
			for c := range fetches {
				c.data, c.err = r.ReadBlob(ctx, c.pack, c.loc)
				close(c.done)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(fetches)
		defer close(items)
		p := &tarProducer{r: r, ix: ix, items: items, fetches: fetches, sem: sem, links: map[devIno]string{}}
		switch {
		case node == nil:
			return p.tree(ctx, "", tree)
		default:
			return p.node(ctx, node.Name, node)
		}
	})
	g.Go(func() error {
		tw := tar.NewWriter(w)
		for it := range items {
			if err := tw.WriteHeader(it.hdr); err != nil {
				return fmt.Errorf("write tar: %w", err)
			}
			for _, c := range it.chunks {
				select {
				case <-c.done:
				case <-ctx.Done():
					return ctx.Err()
				}
				if c.err != nil {
					return c.err
				}
				if _, err := tw.Write(c.data); err != nil {
					return fmt.Errorf("write tar: %w", err)
				}
				sem.Release(int64(c.loc.RawLength))
				c.data = nil
			}
		}
		if err := tw.Close(); err != nil {
			return fmt.Errorf("write tar: %w", err)
		}
		return nil
	})
	return g.Wait()
}

type tarProducer struct {
	r       *repo.Repository
	ix      blobIndex
	items   chan<- *tarItem
	fetches chan<- *tarChunk
	sem     *semaphore.Weighted
	links   map[devIno]string
}

func (p *tarProducer) tree(ctx context.Context, rel string, t *repo.Tree) error {
	for i := range t.Nodes {
		if err := p.node(ctx, path.Join(rel, t.Nodes[i].Name), &t.Nodes[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *tarProducer) emit(ctx context.Context, it *tarItem) error {
	select {
	case p.items <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TarHeader returns the tar header of a node at name.
func TarHeader(name string, n *repo.Node) *tar.Header {
	h := &tar.Header{
		Name: name, Mode: int64(n.Mode), Uid: int(n.UID), Gid: int(n.GID),
		Uname: n.User, Gname: n.Group, ModTime: time.Unix(0, n.ModTime),
		Format: tar.FormatPAX,
	}
	switch n.Type {
	case repo.NodeFile:
		h.Typeflag, h.Size = tar.TypeReg, int64(n.Size)
	case repo.NodeDir:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case repo.NodeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, n.LinkTarget
	case repo.NodeFifo:
		h.Typeflag = tar.TypeFifo
	case repo.NodeCharDev, repo.NodeBlockDev:
		h.Typeflag = tar.TypeChar
		if n.Type == repo.NodeBlockDev {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unixMajor(n.Rdev)), int64(unixMinor(n.Rdev))
	}
	return h
}

func unixMajor(dev uint64) uint32 { return uint32((dev>>32)&0xfffff000) | uint32((dev>>8)&0xfff) }
func unixMinor(dev uint64) uint32 { return uint32((dev>>12)&0xffffff00) | uint32(dev&0xff) }

func (p *tarProducer) node(ctx context.Context, rel string, n *repo.Node) error {
	hdr := TarHeader(rel, n)
	switch n.Type {
	case repo.NodeDir:
		if err := p.emit(ctx, &tarItem{hdr: hdr}); err != nil {
			return err
		}
		sub, err := LoadTree(ctx, p.r, p.ix, n.Subtree)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return p.tree(ctx, rel, sub)
	case repo.NodeFile:
		if n.Links > 1 {
			key := devIno{n.Device, n.Inode}
			if first, ok := p.links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return p.emit(ctx, &tarItem{hdr: hdr})
			}
			p.links[key] = rel
		}
		it := &tarItem{hdr: hdr, chunks: make([]*tarChunk, 0, len(n.Content))}
		var size int64
		locs := make([]*tarChunk, 0, len(n.Content))
		for _, id := range n.Content {
			c, err := p.lookup(rel, id)
			if err != nil {
				return err
			}
			size += int64(c.loc.RawLength)
			locs = append(locs, c)
		}
		if size != hdr.Size {
			return fmt.Errorf("%s: chunks add up to %d bytes, tree says %d: %w", rel, size, hdr.Size, repo.ErrCorrupt)
		}
		// The item goes out first so the writer starts on it while its
		// chunks are still being fetched.
		it.chunks = locs
		if err := p.emit(ctx, it); err != nil {
			return err
		}
		for _, c := range locs {
			if err := p.sem.Acquire(ctx, int64(c.loc.RawLength)); err != nil {
				return err
			}
			select {
			case p.fetches <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	default:
		return p.emit(ctx, &tarItem{hdr: hdr})
	}
}

func (p *tarProducer) lookup(rel string, id chunk.ID) (*tarChunk, error) {
	loc, ok, err := p.ix.Lookup(repo.DataBlob, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: chunk %s is not in the index: %w", rel, id.Short(), repo.ErrNotFound)
	}
	return &tarChunk{loc: loc.Entry, pack: loc.Pack, done: make(chan struct{})}, nil
}
