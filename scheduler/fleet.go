package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// Errors the API maps to status codes.
var (
	errNoSession  = errors.New("no such session (expired, committed or never opened)")
	errForbidden  = errors.New("not allowed for this token")
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errConflict   = errors.New("conflict")
	errRefused    = errors.New("commit refused")
)

// openSession starts a session for node:path with the newest snapshot of
// that path as parent.
func (c *Coordinator) openSession(node, path string) (agent.SessionInfo, error) {
	c.mu.Lock()
	_, _, ok := c.spec(node, path)
	c.mu.Unlock()
	if !ok {
		return agent.SessionInfo{}, fmt.Errorf("%s:%s is not registered: %w", node, path, errNotFound)
	}
	c.lockMu.Lock()
	defer c.lockMu.Unlock()
	if err := c.holdLockLocked(context.Background()); err != nil {
		return agent.SessionInfo{}, err
	}
	// The parent is read and the session registered in one step under the
	// lock that collections take for their roots: otherwise a collection
	// could list its roots between the two, after the parent was
	// forgotten, and condemn what the session will reuse from it.
	c.mu.Lock()
	defer c.mu.Unlock()
	parent, err := c.local.Latest(node, path)
	if err != nil {
		return agent.SessionInfo{}, err
	}
	s := newSession(node, path, parent, c.cfg.Now().Add(c.cfg.Lease))
	c.sessions[s.id] = s
	c.metrics.sessions.Set(float64(len(c.sessions)))
	info := agent.SessionInfo{ID: s.id, Lease: c.cfg.Lease, RepoID: c.cfg.Repo.Config().ID, Parent: parent}
	if parent != nil {
		info.ParentID = string(parent.ID)
	}
	return info, nil
}

// session returns the live session id owned by node.
func (c *Coordinator) sessionFor(id, node string) (*session, error) {
	s := c.sessions[id]
	if s == nil || c.cfg.Now().After(s.expires) {
		return nil, errNoSession
	}
	if node != "" && s.node != node {
		return nil, fmt.Errorf("session %s belongs to node %s: %w", id, s.node, errForbidden)
	}
	return s, nil
}

func (c *Coordinator) renew(id, node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.sessionFor(id, node)
	if err != nil {
		return err
	}
	s.expires = c.cfg.Now().Add(c.cfg.Lease)
	return nil
}

func (c *Coordinator) endSession(id, node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.sessionFor(id, node); err != nil {
		return err
	}
	delete(c.sessions, id)
	c.metrics.sessions.Set(float64(len(c.sessions)))
	return nil
}

// lookup answers which blobs are stored, recording every "stored" answer as
// a root of the session. While a collection is deleting, condemned blobs
// are answered as unseen.
func (c *Coordinator) lookup(id, node string, refs []agent.BlobRef) ([]*agent.BlobLocation, error) {
	if len(refs) > agent.MaxLookupBatch {
		return nil, fmt.Errorf("%d blobs in one lookup, at most %d: %w", len(refs), agent.MaxLookupBatch, errBadRequest)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.sessionFor(id, node)
	if err != nil {
		return nil, err
	}
	out := make([]*agent.BlobLocation, len(refs))
	for i, r := range refs {
		if !r.Type.Valid() {
			return nil, fmt.Errorf("blob type %d: %w", r.Type, errBadRequest)
		}
		if c.condemned != nil && c.condemned(r) {
			continue
		}
		loc, ok, err := c.local.Index.Lookup(r.Type, r.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		s.answered[r] = struct{}{}
		out[i] = &agent.BlobLocation{Pack: loc.Pack, Offset: loc.Entry.Offset, Length: loc.Entry.Length, Raw: loc.Entry.RawLength}
	}
	return out, nil
}

func (c *Coordinator) registerPacks(id, node string, packs []repo.PackInfo) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.sessionFor(id, node)
	if err != nil {
		return err
	}
	for _, p := range packs {
		for _, e := range p.Blobs {
			if !e.Type.Valid() {
				return fmt.Errorf("pack %s: blob type %d: %w", p.ID.Short(), e.Type, errBadRequest)
			}
		}
	}
	s.register(packs)
	return nil
}

// commit verifies and writes a session's snapshot, records it in the
// catalog, makes the index durable and only then acknowledges; retention
// for the path follows.
func (c *Coordinator) commit(ctx context.Context, id, node string, sn repo.Snapshot) (repo.SnapshotID, error) {
	c.mu.Lock()
	s, err := c.sessionFor(id, node)
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	if sn.Node != s.node || sn.Path != s.path {
		return "", fmt.Errorf("snapshot of %s:%s in a session for %s:%s: %w", sn.Node, sn.Path, s.node, s.path, errBadRequest)
	}
	if sn.Tree.IsZero() || sn.Time.IsZero() {
		return "", fmt.Errorf("snapshot without tree or time: %w", errBadRequest)
	}
	var parentTree chunk.ID
	if s.parent != nil {
		parentTree = s.parent.Tree
		sn.Parent = s.parent.ID
	}
	if err := c.verify(ctx, s, sn.Tree, parentTree, "/"); err != nil {
		return "", err
	}
	// The session must still be alive at the moment of commit.
	c.mu.Lock()
	if _, err := c.sessionFor(id, node); err != nil {
		c.mu.Unlock()
		return "", err
	}
	packs := make([]repo.PackInfo, 0, len(s.packs))
	for _, p := range s.packs {
		packs = append(packs, p)
	}
	c.mu.Unlock()

	if err := c.local.Index.AddPacks(packs); err != nil {
		return "", err
	}
	sn.ID = ""
	if err := c.cfg.Repo.SaveSnapshot(ctx, &sn); err != nil {
		return "", err
	}
	if err := c.local.Index.PutSnapshot(&sn); err != nil {
		return "", err
	}
	if err := c.local.Index.Flush(); err != nil {
		return "", err
	}
	c.mu.Lock()
	delete(c.sessions, id)
	if c.gcRunning {
		c.gcCommitted = append(c.gcCommitted, sn.Tree)
	}
	c.metrics.sessions.Set(float64(len(c.sessions)))
	spec, _, _ := c.spec(s.node, s.path)
	c.mu.Unlock()

	keep := spec.Keep
	if keep <= 0 {
		keep = c.cfg.DefaultKeep
	}
	ds, err := c.local.Retain(ctx, agent.Selector{Node: s.node, Path: s.path}, agent.Policy{Last: keep}, time.Local, false)
	if err != nil {
		c.logf("retention of %s:%s: %v", s.node, s.path, err)
	} else {
		for _, d := range ds {
			if !d.Keep {
				c.logf("retention: forgot snapshot %s of %s:%s", d.Snapshot.ID.Short(), s.node, s.path)
			}
		}
	}
	c.metrics.updateDedup(c.local)
	return sn.ID, nil
}

// verify walks the trees of a new snapshot that differ from its parent's
// and refuses any blob the session had no right to reference: one it
// neither was told is stored nor uploaded itself, unless the file is
// unchanged from the parent (the parent is pinned by the session).
func (c *Coordinator) verify(ctx context.Context, s *session, tree, parent chunk.ID, where string) error {
	if tree == parent {
		return nil
	}
	c.mu.Lock()
	ok := s.allowed(agent.BlobRef{Type: repo.TreeBlob, ID: tree})
	pack, entry, uploaded := s.location(repo.TreeBlob, tree)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("tree %s at %s was neither uploaded in this session nor answered as stored: %w", tree.Short(), where, errRefused)
	}
	var t *repo.Tree
	var err error
	if uploaded {
		t, err = c.cfg.Repo.LoadTree(ctx, pack, entry)
	} else {
		t, err = agent.LoadTree(ctx, c.cfg.Repo, c.local.Index, tree)
	}
	if err != nil {
		return fmt.Errorf("tree %s at %s: %v: %w", tree.Short(), where, err, errRefused)
	}
	var pt *repo.Tree
	if !parent.IsZero() {
		if pt, err = agent.LoadTree(ctx, c.cfg.Repo, c.local.Index, parent); err != nil {
			return fmt.Errorf("parent tree at %s: %w", where, err)
		}
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		var pn *repo.Node
		if pt != nil {
			pn = pt.Find(n.Name)
		}
		switch n.Type {
		case repo.NodeDir:
			var psub chunk.ID
			if pn != nil && pn.Type == repo.NodeDir {
				psub = pn.Subtree
			}
			if err := c.verify(ctx, s, n.Subtree, psub, where+n.Name+"/"); err != nil {
				return err
			}
		case repo.NodeFile:
			if pn != nil && pn.Type == repo.NodeFile && slices.Equal(pn.Content, n.Content) {
				continue
			}
			c.mu.Lock()
			for _, id := range n.Content {
				if !s.allowed(agent.BlobRef{Type: repo.DataBlob, ID: id}) {
					c.mu.Unlock()
					return fmt.Errorf("chunk %s of %s%s was neither uploaded in this session nor answered as stored: %w", id.Short(), where, n.Name, errRefused)
				}
			}
			c.mu.Unlock()
		}
	}
	return nil
}

// GC runs garbage collection while backups go on, by the session protocol:
// open sessions' roots are marked, and in one step serialized with lookups
// whatever sessions were told since is kept too and everything else
// unmarked is condemned (answered as unseen) until the run ends.
func (c *Coordinator) GC(ctx context.Context, dryRun bool) (agent.GCStats, error) {
	c.mu.Lock()
	if c.gcRunning {
		c.mu.Unlock()
		return agent.GCStats{}, fmt.Errorf("a collection is already running: %w", errConflict)
	}
	c.gcRunning, c.gcCommitted = true, nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.gcRunning, c.condemned, c.gcCommitted = false, nil, nil
		c.mu.Unlock()
	}()
	roots := func() (agent.Roots, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var rs agent.Roots
		for _, s := range c.sessions {
			s.roots(&rs)
		}
		return rs, nil
	}
	st, err := agent.GC(ctx, c.local, agent.GCOptions{
		DryRun: dryRun, Roots: roots, Grace: 10 * c.cfg.Lease,
		Condemn: func(live func(agent.BlobRef) bool) (agent.Roots, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			var late agent.Roots
			keep := map[agent.BlobRef]bool{}
			for _, s := range c.sessions {
				s.roots(&late)
			}
			late.Trees = append(late.Trees, c.gcCommitted...)
			for _, b := range late.Blobs {
				keep[b] = true
			}
			if !dryRun {
				c.condemned = func(r agent.BlobRef) bool { return !keep[r] && !live(r) }
			}
			return late, nil
		},
		Log: func(s string) { c.logf("gc: %s", s) },
	})
	if err == nil && !dryRun {
		c.metrics.gcRuns.Inc()
		c.metrics.updateDedup(c.local)
	}
	return st, err
}
