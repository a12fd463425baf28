package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// CheckOptions say how deep check goes.
type CheckOptions struct {
	// ReadData downloads packs and verifies every blob in them.
	ReadData bool
	// ReadPack, if set with ReadData, chooses which packs to read (a
	// subset); nil reads all.
	ReadPack func(repo.PackID) bool
	Log      func(string)
}

// SubsetNth selects the n-th of t groups of packs (1-based), by pack ID, so
// t runs with n = 1..t read every pack once.
func SubsetNth(n, t int) func(repo.PackID) bool {
	return func(id repo.PackID) bool { return int(id[0])%t == n-1 }
}

// SubsetFraction selects about the given fraction of packs at random.
func SubsetFraction(f float64) func(repo.PackID) bool {
	return func(repo.PackID) bool { return rand.Float64() < f }
}

// Problem is one thing wrong, named by the object it is in.
type Problem struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// CheckReport is what check found.
type CheckReport struct {
	Snapshots    int       `json:"snapshots"`
	Trees        int       `json:"trees"`
	DataBlobs    int       `json:"data_blobs"`
	Packs        int       `json:"packs"`
	PacksRead    int       `json:"packs_read"`
	BlobsRead    int       `json:"blobs_read"`
	Unreferenced int       `json:"unreferenced_packs"`
	Problems     []Problem `json:"problems"`
}

// Healthy reports whether check found no problem.
func (c *CheckReport) Healthy() bool { return len(c.Problems) == 0 }

type checkState struct {
	mu      sync.Mutex
	rep     *CheckReport
	byBlob  map[blobKey]checkLoc
	packs   map[repo.PackID]*checkPack
	missing map[repo.PackID]bool
}

type checkLoc struct {
	pack  repo.PackID
	entry repo.BlobEntry
}

type checkPack struct {
	size    int64
	entries []repo.BlobEntry
	index   string
}

func (s *checkState) problem(object string, err error) {
	s.mu.Lock()
	s.rep.Problems = append(s.rep.Problems, Problem{Object: object, Error: err.Error()})
	s.mu.Unlock()
}

// Check verifies the repository from the bucket, not from the local index:
// every index object is read, every indexed pack must exist with its size,
// every snapshot's trees are read and decoded, and every chunk they name
// must be indexed in an existing pack. With ReadData every selected pack is
// downloaded, hashed against its name, and every blob in it decrypted,
// decompressed and re-hashed. Each problem names its object. An error is
// returned only when checking itself could not go on (the store is down).
func Check(ctx context.Context, l *Local, opts CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{}
	s := &checkState{rep: rep, byBlob: map[blobKey]checkLoc{}, packs: map[repo.PackID]*checkPack{}, missing: map[repo.PackID]bool{}}
	r := l.Repo
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			opts.Log(fmt.Sprintf(format, a...))
		}
	}

	objs, err := r.ListIndexNames(ctx)
	if err != nil {
		return nil, err
	}
	logf("reading %d index objects", len(objs))
	for _, o := range objs {
		packs, err := r.ReadIndex(ctx, o.Name)
		if err != nil {
			if !errors.Is(err, repo.ErrCorrupt) && !errors.Is(err, repo.ErrNotFound) {
				return nil, err
			}
			s.problem(o.Name, err)
			continue
		}
		for _, p := range packs {
			cp := s.packs[p.ID]
			if cp == nil {
				cp = &checkPack{size: p.Size, index: o.Name}
				s.packs[p.ID] = cp
			} else if cp.size != p.Size {
				s.problem(p.ID.ObjectName(), fmt.Errorf("index %s says %d bytes, index %s says %d", o.Name, p.Size, cp.index, cp.size))
			}
			for _, e := range p.Blobs {
				cp.entries = append(cp.entries, e)
				s.byBlob[blobKey{e.Type, e.ID}] = checkLoc{pack: p.ID, entry: e}
			}
		}
	}

	// Packs: every indexed one must exist with its size.
	listed := map[repo.PackID]int64{}
	if err := r.ListPacks(ctx, func(id repo.PackID, size int64) error {
		listed[id] = size
		return nil
	}); err != nil {
		return nil, err
	}
	for id, cp := range s.packs {
		rep.Packs++
		size, ok := listed[id]
		if !ok {
			// Listings can be short; ask for the object itself.
			oi, err := r.Store().Stat(ctx, id.ObjectName())
			if errors.Is(err, repo.ErrNotFound) {
				s.missing[id] = true
				s.problem(id.ObjectName(), fmt.Errorf("pack missing (%d blobs indexed by %s)", len(cp.entries), cp.index))
				continue
			}
			if err != nil {
				return nil, err
			}
			size = oi.Size
		}
		if size != cp.size {
			s.problem(id.ObjectName(), fmt.Errorf("pack is %d bytes, index says %d (truncated or replaced)", size, cp.size))
		}
	}
	for id := range listed {
		if s.packs[id] == nil {
			rep.Unreferenced++
		}
	}

	// Snapshots and everything they reference.
	ids, err := r.ListSnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	logf("checking %d snapshots", len(ids))
	seenTrees := map[chunk.ID]bool{}
	seenData := map[chunk.ID]bool{}
	for _, id := range ids {
		sn, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			if errors.Is(err, repo.ErrNotFound) {
				continue
			}
			s.problem("snapshots/"+string(id), err)
			continue
		}
		rep.Snapshots++
		if err := s.walk(ctx, r, sn, sn.Tree, "/", seenTrees, seenData); err != nil {
			return nil, err
		}
	}
	rep.Trees, rep.DataBlobs = len(seenTrees), len(seenData)

	if opts.ReadData {
		var sel []repo.PackID
		for id := range s.packs {
			if !s.missing[id] && (opts.ReadPack == nil || opts.ReadPack(id)) {
				sel = append(sel, id)
			}
		}
		sort.Slice(sel, func(i, j int) bool { return string(sel[i][:]) < string(sel[j][:]) })
		logf("reading %d packs", len(sel))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for _, id := range sel {
			g.Go(func() error { return s.readPack(gctx, r, id) })
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		rep.PacksRead = len(sel)
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Object < rep.Problems[j].Object })
	return rep, nil
}

func (s *checkState) walk(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, id chunk.ID, path string, seenTrees, seenData map[chunk.ID]bool) error {
	if seenTrees[id] {
		return nil
	}
	seenTrees[id] = true
	where := fmt.Sprintf("tree %s (%s in snapshot %s)", id.Short(), path, sn.ID.Short())
	loc, ok := s.byBlob[blobKey{repo.TreeBlob, id}]
	if !ok {
		s.problem(where, errors.New("not in any index"))
		return nil
	}
	if s.missing[loc.pack] {
		s.problem(where, fmt.Errorf("its pack %s is missing", loc.pack))
		return nil
	}
	t, err := r.LoadTree(ctx, loc.pack, loc.entry)
	if err != nil {
		if !errors.Is(err, repo.ErrCorrupt) && !errors.Is(err, repo.ErrNotFound) && !strings.Contains(err.Error(), "beyond end") {
			return err
		}
		s.problem(loc.pack.ObjectName(), fmt.Errorf("%s: %w", where, err))
		return nil
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		switch n.Type {
		case repo.NodeDir:
			if err := s.walk(ctx, r, sn, n.Subtree, path+n.Name+"/", seenTrees, seenData); err != nil {
				return err
			}
		case repo.NodeFile:
			var sum uint64
			for _, c := range n.Content {
				cl, ok := s.byBlob[blobKey{repo.DataBlob, c}]
				if !ok {
					s.problem("chunk "+c.String(), fmt.Errorf("of %s%s in snapshot %s is not in any index", path, n.Name, sn.ID.Short()))
					continue
				}
				sum += uint64(cl.entry.RawLength)
				if seenData[c] {
					continue
				}
				seenData[c] = true
				if s.missing[cl.pack] {
					s.problem("chunk "+c.String(), fmt.Errorf("of %s%s: its pack %s is missing", path, n.Name, cl.pack))
				}
			}
			if sum != n.Size && len(n.Content) > 0 {
				s.problem(where, fmt.Errorf("%s%s: chunks add up to %d bytes, tree says %d", path, n.Name, sum, n.Size))
			}
		}
	}
	return nil
}

func (s *checkState) readPack(ctx context.Context, r *repo.Repository, id repo.PackID) error {
	name := id.ObjectName()
	buf, err := r.ReadPack(ctx, id)
	if err != nil {
		if errors.Is(err, repo.ErrCorrupt) || errors.Is(err, repo.ErrNotFound) {
			s.problem(name, err)
			// Go on to name the damaged blobs too, from the bytes we have.
			buf, err = r.Store().Get(ctx, name, 0, -1)
			if err != nil {
				return nil
			}
		} else {
			return err
		}
	}
	s.mu.Lock()
	entries := s.packs[id].entries
	s.mu.Unlock()
	bad := 0
	for _, e := range entries {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(buf)) {
			s.problem(name, fmt.Errorf("%s blob %s at %d+%d lies beyond the pack's %d bytes", e.Type, e.ID.Short(), e.Offset, e.Length, len(buf)))
			bad++
			continue
		}
		if _, err := r.OpenBlob(e, buf[e.Offset:end]); err != nil {
			s.problem(name, err)
			bad++
		}
	}
	s.mu.Lock()
	s.rep.BlobsRead += len(entries) - bad
	s.mu.Unlock()
	return nil
}
