package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// memDir is a directory being assembled from tar entries, which may come
// in any order and leave parents implicit.
type memDir struct {
	node     repo.Node
	children map[string]*memEntry
}

type memEntry struct {
	node repo.Node
	dir  *memDir // for directories
}

// BackupTar stores a tar stream (plain, gzip or zstd, detected from its
// first bytes) as a snapshot of opts.Node and opts.Path. Each entry is
// chunked as its own file, so a tar of data already stored adds almost
// nothing. Entries whose names leave the archive (.., absolute after
// cleaning) are reported and skipped. The whole directory structure is held
// in memory until the end of the stream (about 200 bytes per entry).
func BackupTar(ctx context.Context, r *repo.Repository, ix blobIndex, in io.Reader, opts BackupOptions) (*repo.Snapshot, error) {
	if opts.Node == "" || opts.Path == "" {
		return nil, errors.New("tar backup: node and path are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rd, err := decompress(in)
	if err != nil {
		return nil, err
	}
	b := newBackup(r, ix, opts)
	var root chunk.ID
	upStats, err := r.WithUploader(ctx, repo.UploadOptions{
		Uploaders: opts.Uploaders,
		OnPack:    b.packDone,
	}, func(ctx context.Context, up *repo.Uploader) error {
		b.up = up
		b.saves = make(chan saveJob, 4)
		g, ctx := errgroup.WithContext(ctx)
		var savers sync.WaitGroup
		for range 2 {
			savers.Add(1)
			g.Go(func() error { defer savers.Done(); return b.saveLoop(ctx) })
		}
		var top *memDir
		g.Go(func() error {
			defer close(b.saves)
			var err error
			top, err = b.readTar(ctx, tar.NewReader(rd))
			return err
		})
		if err := g.Wait(); err != nil {
			return err
		}
		var err error
		root, err = b.storeMemDir(ctx, top, "/")
		return err
	})
	if err != nil {
		return nil, err
	}
	return b.commitSnapshot(ctx, root, "tar", upStats)
}

// decompress recognises gzip and zstd by their magic numbers.
func decompress(in io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(in, 1<<20)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read tar stream: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip tar stream: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd tar stream: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return br, nil
}

// cleanTarName turns an entry name into slash-separated components inside
// the archive, or reports why it cannot be.
func cleanTarName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	n = path.Clean(n)
	if n == "." || n == "" {
		return "", nil // the archive's root
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q leaves the archive", name)
		}
		if err := repo.ValidName(part); err != nil {
			return "", fmt.Errorf("entry %q: %v", name, err)
		}
	}
	return n, nil
}

func (b *backup) readTar(ctx context.Context, tr *tar.Reader) (*memDir, error) {
	top := &memDir{node: repo.Node{Type: repo.NodeDir, Mode: 0o755, ModTime: b.start.UnixNano()}, children: map[string]*memEntry{}}
	files := map[string]*memEntry{} // by cleaned name, for hard links
	links := map[uint64]int{}       // synthetic inode → names
	var nextInode uint64
	sp, err := chunk.NewSplitter(b.params)
	if err != nil {
		return nil, err
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar stream: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name, err := cleanTarName(hdr.Name)
		if err != nil {
			b.reportError(hdr.Name, err)
			continue
		}
		n := repo.Node{
			Mode: uint32(hdr.Mode) & 0o7777, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid),
			User: hdr.Uname, Group: hdr.Gname, ModTime: hdr.ModTime.UnixNano(),
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			n.Type = repo.NodeDir
		case tar.TypeReg, tar.TypeGNUSparse:
			n.Type = repo.NodeFile
			nextInode++
			n.Inode, n.Links = nextInode, 1
			if n.Content, n.Size, err = b.chunkStream(ctx, sp, tr); err != nil {
				return nil, fmt.Errorf("tar entry %s: %w", hdr.Name, err)
			}
			b.sum.filesNew.Add(1)
			b.sum.totalSize.Add(n.Size)
		case tar.TypeLink:
			target, err := cleanTarName(hdr.Linkname)
			first := files[target]
			if err != nil || first == nil {
				b.reportError(hdr.Name, fmt.Errorf("hard link to %q, which is not an earlier file of the archive", hdr.Linkname))
				continue
			}
			n = first.node
			n.Name = ""
			b.sum.totalSize.Add(n.Size)
			b.sum.filesUnchanged.Add(1)
		case tar.TypeSymlink:
			n.Type, n.LinkTarget = repo.NodeSymlink, hdr.Linkname
		case tar.TypeFifo:
			n.Type = repo.NodeFifo
		case tar.TypeChar, tar.TypeBlock:
			n.Type = repo.NodeCharDev
			if hdr.Typeflag == tar.TypeBlock {
				n.Type = repo.NodeBlockDev
			}
			n.Rdev = mkdev(uint64(hdr.Devmajor), uint64(hdr.Devminor))
		default:
			if b.opts.OnSkip != nil {
				b.opts.OnSkip(hdr.Name, fmt.Sprintf("tar entry type %q not stored", hdr.Typeflag))
			}
			continue
		}
		if name == "" {
			if n.Type == repo.NodeDir {
				top.node = n
			}
			continue
		}
		e := place(top, name, n, b.start.UnixNano())
		if n.Type == repo.NodeFile {
			files[name] = e
			links[n.Inode]++
		}
	}
	// Every name of a hard-linked inode gets the final link count, so
	// restore links them again.
	setLinks(top, links)
	return top, nil
}

func setLinks(d *memDir, links map[uint64]int) {
	for _, e := range d.children {
		if e.dir != nil {
			setLinks(e.dir, links)
		} else if e.node.Type == repo.NodeFile {
			e.node.Links = uint64(links[e.node.Inode])
		}
	}
}

func mkdev(major, minor uint64) uint64 {
	return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor &^ 0xff) << 12) | ((major &^ 0xfff) << 32)
}

// place puts node n at name, creating implicit parent directories. A later
// entry for the same name replaces the earlier one, as tar extraction does.
func place(top *memDir, name string, n repo.Node, now int64) *memEntry {
	parts := strings.Split(name, "/")
	d := top
	for _, p := range parts[:len(parts)-1] {
		e := d.children[p]
		if e == nil || e.dir == nil {
			e = &memEntry{node: repo.Node{Name: p, Type: repo.NodeDir, Mode: 0o755, ModTime: now},
				dir: &memDir{children: map[string]*memEntry{}}}
			d.children[p] = e
		}
		d = e.dir
	}
	base := parts[len(parts)-1]
	n.Name = base
	e := d.children[base]
	if n.Type == repo.NodeDir && e != nil && e.dir != nil {
		e.node = n // explicit metadata for a directory already implied
		return e
	}
	e = &memEntry{node: n}
	if n.Type == repo.NodeDir {
		e.dir = &memDir{children: map[string]*memEntry{}}
	}
	d.children[base] = e
	return e
}

// chunkStream chunks one file's contents (from disk or a tar entry),
// queueing new chunks for saving. A read error is the file's; an index
// error is fatal to the backup.
func (b *backup) chunkStream(ctx context.Context, sp *chunk.Splitter, r io.Reader) ([]chunk.ID, uint64, error) {
	sp.Reset(r)
	var ids []chunk.ID
	var size uint64
	for {
		c, err := sp.Next()
		if errors.Is(err, io.EOF) {
			return ids, size, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		ids = append(ids, c.ID)
		size += uint64(len(c.Data))
		b.sum.bytesRead.Add(uint64(len(c.Data)))
		if p := b.opts.Progress; p != nil {
			p.BytesRead.Add(uint64(len(c.Data)))
		}
		if b.claims != nil {
			if err := b.handOff(ctx, repo.DataBlob, c.ID, chunkCopies.copyOf(c.Data)); err != nil {
				return nil, 0, err
			}
			continue
		}
		isNew, err := b.claim(repo.DataBlob, c.ID)
		if err != nil {
			return nil, 0, fatalError{fmt.Errorf("index lookup: %w", err)}
		}
		if !isNew {
			b.sum.chunksReused.Add(1)
			continue
		}
		b.sum.chunksNew.Add(1)
		select {
		case b.saves <- saveJob{typ: repo.DataBlob, id: c.ID, data: chunkCopies.copyOf(c.Data)}:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// handOff passes a blob (data the caller no longer touches) to the claim
// workers once the budget of blobs waiting for an answer has room for it.
func (b *backup) handOff(ctx context.Context, t repo.BlobType, id chunk.ID, data []byte) error {
	held := min(int64(len(data)), claimBudget)
	if err := b.held.Acquire(ctx, held); err != nil {
		return err
	}
	select {
	case b.claims <- saveJob{typ: t, id: id, data: data, held: held}:
		return nil
	case <-ctx.Done():
		b.held.Release(held)
		return ctx.Err()
	}
}

func (b *backup) storeMemDir(ctx context.Context, d *memDir, where string) (chunk.ID, error) {
	names := make([]string, 0, len(d.children))
	for n := range d.children {
		names = append(names, n)
	}
	sort.Strings(names)
	tree := repo.Tree{Nodes: make([]repo.Node, 0, len(names))}
	for _, name := range names {
		e := d.children[name]
		n := e.node
		if e.dir != nil {
			id, err := b.storeMemDir(ctx, e.dir, where+name+"/")
			if err != nil {
				return id, err
			}
			n.Subtree = id
		}
		tree.Nodes = append(tree.Nodes, n)
	}
	b.sum.dirs.Add(1)
	return b.storeTree(ctx, &tree, where, chunk.ID{})
}
