package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// Session is an open backup session at the coordinator, seen from the
// agent. It renews its lease until closed.
type Session struct {
	Info   SessionInfo
	client *Client
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	err    error // set when a renewal was refused
}

// OpenSession opens a session for node and path and starts renewing it.
func OpenSession(ctx context.Context, c *Client, node, path string) (*Session, error) {
	var info SessionInfo
	if err := c.Do(ctx, http.MethodPost, "/v1/sessions", OpenSessionRequest{Node: node, Path: path}, &info); err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	if info.Parent != nil {
		info.Parent.ID = repo.SnapshotID(info.ParentID)
	}
	s := &Session{Info: info, client: c, stop: make(chan struct{}), done: make(chan struct{})}
	go s.renewLoop()
	return s, nil
}

func (s *Session) path(suffix string) string { return "/v1/sessions/" + s.Info.ID + suffix }

// renewLoop renews the lease three times per lease period.
func (s *Session) renewLoop() {
	defer close(s.done)
	every := s.Info.Lease / 3
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := s.client.Do(ctx, http.MethodPost, s.path("/renew"), nil, nil)
		cancel()
		if err != nil {
			if ae, ok := err.(*APIError); ok && ae.Status == http.StatusGone {
				s.mu.Lock()
				s.err = fmt.Errorf("session %s expired: %w", s.Info.ID, err)
				s.mu.Unlock()
				return
			}
		}
	}
}

// Close stops renewing and, unless the session committed, releases it.
func (s *Session) Close(committed bool) {
	close(s.stop)
	<-s.done
	if !committed {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.client.Do(ctx, http.MethodDelete, s.path(""), nil, nil)
	}
}

// Commit asks the coordinator to verify and write the snapshot.
func (s *Session) Commit(ctx context.Context, sn *repo.Snapshot) (repo.SnapshotID, error) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	var resp CommitResponse
	if err := s.client.Do(ctx, http.MethodPost, s.path("/commit"), CommitRequest{Snapshot: *sn}, &resp); err != nil {
		return "", err
	}
	return repo.SnapshotID(resp.ID), nil
}

// remoteIndex answers the engine's index questions through the session.
// Lookups are batched across the engine's goroutines: one request is in
// flight at a time, and whatever was asked meanwhile goes in the next, so
// a lone question waits for nothing and busy readers share requests. Tree
// locations can be asked ahead (Prefetch), so walking the parent snapshot
// costs about one round trip per level, not one per directory.
type remoteIndex struct {
	s    *Session
	ctx  context.Context
	reqs chan lookupReq

	mu    sync.Mutex
	trees map[chunk.ID]index.Location // prefetched, each used once
}

type lookupReq struct {
	ref  BlobRef
	resp chan lookupResp // nil for a prefetch
}

type lookupResp struct {
	loc *BlobLocation
	err error
}

var (
	_ blobIndex  = (*remoteIndex)(nil)
	_ prefetcher = (*remoteIndex)(nil)
)

func newRemoteIndex(ctx context.Context, s *Session) *remoteIndex {
	ri := &remoteIndex{s: s, ctx: ctx, reqs: make(chan lookupReq, 256), trees: map[chunk.ID]index.Location{}}
	go ri.batchLoop()
	return ri
}

func (ri *remoteIndex) batchLoop() {
	for {
		var batch []lookupReq
		select {
		case <-ri.ctx.Done():
			return
		case r := <-ri.reqs:
			batch = append(batch, r)
		}
	gather:
		for len(batch) < MaxLookupBatch {
			select {
			case r := <-ri.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		refs := make([]BlobRef, len(batch))
		for i, r := range batch {
			refs[i] = r.ref
		}
		var resp LookupResponse
		err := ri.s.client.Do(ri.ctx, http.MethodPost, ri.s.path("/lookup"), LookupRequest{Blobs: refs}, &resp)
		if err == nil && len(resp.Found) != len(batch) {
			err = fmt.Errorf("lookup: %d answers for %d blobs", len(resp.Found), len(batch))
		}
		for i, r := range batch {
			switch {
			case r.resp == nil:
				if err == nil && resp.Found[i] != nil {
					ri.mu.Lock()
					ri.trees[r.ref.ID] = locationOf(r.ref, resp.Found[i])
					ri.mu.Unlock()
				}
			case err != nil:
				r.resp <- lookupResp{err: err}
			default:
				r.resp <- lookupResp{loc: resp.Found[i]}
			}
		}
	}
}

func locationOf(ref BlobRef, loc *BlobLocation) index.Location {
	return index.Location{Pack: loc.Pack, Entry: repo.BlobEntry{
		Type: ref.Type, ID: ref.ID, Offset: loc.Offset, Length: loc.Length, RawLength: loc.Raw,
	}}
}

// Prefetch implements prefetcher: it asks for the trees' locations
// without waiting for the answer. An unanswered prefetch costs nothing but
// the later Lookup's own round trip.
func (ri *remoteIndex) Prefetch(ids []chunk.ID) {
	for _, id := range ids {
		select {
		case ri.reqs <- lookupReq{ref: BlobRef{Type: repo.TreeBlob, ID: id}}:
		case <-ri.ctx.Done():
			return
		}
	}
}

// Lookup implements blobIndex.
func (ri *remoteIndex) Lookup(t repo.BlobType, id chunk.ID) (index.Location, bool, error) {
	if t == repo.TreeBlob {
		ri.mu.Lock()
		loc, ok := ri.trees[id]
		delete(ri.trees, id)
		ri.mu.Unlock()
		if ok {
			return loc, true, nil
		}
	}
	resp := make(chan lookupResp, 1)
	select {
	case ri.reqs <- lookupReq{ref: BlobRef{Type: t, ID: id}, resp: resp}:
	case <-ri.ctx.Done():
		return index.Location{}, false, ri.ctx.Err()
	}
	var r lookupResp
	select {
	case r = <-resp:
	case <-ri.ctx.Done():
		return index.Location{}, false, ri.ctx.Err()
	}
	if r.err != nil || r.loc == nil {
		return index.Location{}, false, r.err
	}
	return locationOf(BlobRef{Type: t, ID: id}, r.loc), true, nil
}

// AddPacks implements blobIndex: the packs become the session's roots.
func (ri *remoteIndex) AddPacks(packs []repo.PackInfo) error {
	return ri.s.client.Do(ri.ctx, http.MethodPost, ri.s.path("/packs"), RegisterPacksRequest{Packs: packs}, nil)
}

// BackupRemote runs one backup of opts.Path as a session at the
// coordinator: dedup questions go to the coordinator in batches, packs go
// straight to the store, and the coordinator commits the snapshot.
func BackupRemote(ctx context.Context, r *repo.Repository, c *Client, opts BackupOptions) (*repo.Snapshot, error) {
	s, err := OpenSession(ctx, c, opts.Node, opts.Path)
	if err != nil {
		return nil, err
	}
	if s.Info.RepoID != r.Config().ID {
		s.Close(false)
		return nil, fmt.Errorf("coordinator serves repository %s, this agent opened %s", s.Info.RepoID, r.Config().ID)
	}
	committed := false
	defer func() { s.Close(committed) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts.Parent = s.Info.Parent
	opts.Commit = s.Commit
	sn, err := Backup(ctx, r, newRemoteIndex(ctx, s), opts)
	if err != nil {
		return nil, err
	}
	committed = true
	return sn, nil
}
