package scheduler

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic/chunker"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
)

func TestBackoff(t *testing.T) {
	cases := []struct {
		every    time.Duration
		failures int
		want     time.Duration
	}{
		{time.Hour, 1, 6 * time.Minute},
		{time.Hour, 2, 12 * time.Minute},
		{time.Hour, 4, 48 * time.Minute},
		{time.Hour, 5, time.Hour}, // never longer than the interval
		{time.Hour, 50, time.Hour},
		{time.Second, 1, time.Second}, // never under a second
		{10 * time.Second, 3, 4 * time.Second},
	}
	for _, c := range cases {
		if got := backoff(c.every, c.failures); got != c.want {
			t.Errorf("backoff(%s, %d) = %s, want %s", c.every, c.failures, got, c.want)
		}
	}
}

func TestTimerHeapOrder(t *testing.T) {
	var h timerHeap
	base := time.Unix(1000, 0)
	for _, s := range []int{5, 1, 4, 2, 3} {
		h.push(base.Add(time.Duration(s)*time.Second), "n", fmt.Sprint(s))
	}
	var got []string
	for h.Len() > 0 {
		got = append(got, heap.Pop(&h).(timerItem).path)
	}
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("order %v, want earliest first", got)
	}
}

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type testEnv struct {
	c     *Coordinator
	clock *fakeClock
	srv   *httptest.Server
	node  *agent.Client
	src   string

	lookupCalls, lookupTrees atomic.Int64 // requests to .../lookup, trees asked
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	params := &chunk.Params{Polynomial: chunker.Pol(0x3DA3358B4DC173), MinSize: 512 << 10, MaxSize: 8 << 20, AverageBits: 20, IDKey: make([]byte, 32)}
	r, err := repo.Init(ctx, mem.New(), "pw", repo.InitOptions{KDF: repo.KDFParams{Time: 1, Memory: 64, Threads: 1}, Chunker: params})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	c, err := Open(ctx, Config{Repo: r, StateDir: t.TempDir(), AdminToken: "admin", Lease: time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &testEnv{c: c, clock: clock}
	srv := httptest.NewServer(e.countLookups(c.Handler()))
	t.Cleanup(srv.Close)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("some file content"), 0o644); err != nil {
		t.Fatal(err)
	}
	admin, _ := agent.NewClient(srv.URL, "admin", "", time.Minute)
	var reg RegisterResponse
	if err := admin.Do(ctx, http.MethodPost, "/v1/nodes", RegisterRequest{Name: "n1", Addr: "127.0.0.1:1", Paths: []PathSpec{{Path: src, Every: Duration(time.Hour)}}}, &reg); err != nil {
		t.Fatal(err)
	}
	node, _ := agent.NewClient(srv.URL, reg.Token, "", time.Minute)
	e.srv, e.node, e.src = srv, node, src
	return e
}

// countLookups counts the agents' lookup requests and the trees they ask
// about, for tests of how chatty a backup is.
func (e *testEnv) countLookups(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/lookup") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var req agent.LookupRequest
			if json.Unmarshal(body, &req) == nil {
				for _, b := range req.Blobs {
					if b.Type == repo.TreeBlob {
						e.lookupTrees.Add(1)
					}
				}
			}
			e.lookupCalls.Add(1)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	})
}

func (e *testEnv) backup(t *testing.T) *repo.Snapshot {
	t.Helper()
	sn, err := agent.BackupRemote(context.Background(), e.c.cfg.Repo, e.node, agent.BackupOptions{Node: "n1", Path: e.src})
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestRemoteBackupCommitsThroughTheCoordinator(t *testing.T) {
	e := newTestEnv(t)
	first := e.backup(t)
	second := e.backup(t)
	if second.Parent != first.ID {
		t.Errorf("second snapshot's parent %q, want %q", second.Parent, first.ID)
	}
	if second.Summary.StoredAdded > 1024 {
		t.Errorf("unchanged second backup stored %d bytes", second.Summary.StoredAdded)
	}
	sns, _ := e.c.local.Index.Snapshots()
	if len(sns) != 2 {
		t.Fatalf("catalog has %d snapshots", len(sns))
	}
}

// A backup where nothing changed asks the coordinator about the parent's
// trees ahead, a level at a time, and claims its own trees through claim
// workers whose questions share requests: a few requests, not two per
// directory.
func TestRemoteNoChangeBackupAsksLittle(t *testing.T) {
	e := newTestEnv(t)
	const dirs = 30
	for i := range dirs {
		d := filepath.Join(e.src, fmt.Sprintf("d%02d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(fmt.Sprint("file ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Files modified just before a backup are read again by the next one
	// (the racy-mtime rule); these are old.
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(e.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	first := e.backup(t)
	e.lookupCalls.Store(0)
	e.lookupTrees.Store(0)
	second := e.backup(t)
	if second.Tree != first.Tree {
		t.Fatalf("unchanged tree has a new root %s, want %s", second.Tree.Short(), first.Tree.Short())
	}
	// Before: 1 + 30 tree loads and 31 tree claims, one request each. Each
	// tree is now asked about about twice (loaded, claimed), a few three
	// times: parallel walkers can ask before the prefetch is answered.
	// Questions share requests: 4-8 of them usually, up to 18 when the
	// machine is busy (80 runs); a request per folder would be 31, and
	// per question 62.
	if calls, trees := e.lookupCalls.Load(), e.lookupTrees.Load(); calls >= dirs+1 || trees > 2*(dirs+1)+10 {
		t.Errorf("no-change backup of %d folders made %d lookup requests asking about %d trees; want fewer than %d and at most %d", dirs+1, calls, trees, dirs+1, 2*(dirs+1)+10)
	} else if trees < 2*(dirs+1) {
		// Claims tell the coordinator what the session references; a
		// collection keeps that. Unclaimed, a tree can be collected.
		t.Errorf("no-change backup asked about %d trees; every one of the %d must be loaded and claimed", trees, dirs+1)
	}

	// A change below one folder: that folder's tree and the root's are new,
	// claimed, uploaded, and the commit is accepted.
	if err := os.WriteFile(filepath.Join(e.src, "d07", "f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := e.backup(t)
	if third.Tree == second.Tree || third.Summary.TreesNew != 2 {
		t.Errorf("one changed folder: root %s (was %s), %d new trees, want a new root and 2", third.Tree.Short(), second.Tree.Short(), third.Summary.TreesNew)
	}
}

// An initial backup of many small files does not ask about each chunk in
// its own round trip: readers hand chunks to claim workers and go on, and
// the workers' questions share requests.
func TestRemoteInitialBackupBatchesLookups(t *testing.T) {
	e := newTestEnv(t)
	const files = 300
	for i := range files {
		d := filepath.Join(e.src, fmt.Sprintf("d%d", i%10))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprint(i)), []byte(fmt.Sprint("small file ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sn := e.backup(t)
	// 301 data chunks (f too) and 11 trees; two readers asking in turn made
	// one request per one or two of them.
	if calls := e.lookupCalls.Load(); calls > files/5 {
		t.Errorf("initial backup of %d files made %d lookup requests, want at most %d", files+1, calls, files/5)
	}
	if got := sn.Summary; got.ChunksNew != files+1 || got.TreesNew != 11 || got.FilesNew != files+1 {
		t.Errorf("summary %+v: want %d new files and chunks, 11 new trees", got, files+1)
	}
	tree, err := agent.LoadTree(context.Background(), e.c.cfg.Repo, e.c.local.Index, sn.Tree)
	if err != nil || len(tree.Nodes) != 11 {
		t.Fatalf("root tree: %v, %d entries", err, len(tree.Nodes))
	}
}

// forgeCommit opens a session and commits a tree that references a data
// chunk the repository holds but the session was never told about.
func forgeCommit(t *testing.T, e *testEnv, lookupFirst bool) error {
	ctx := context.Background()
	prior := e.backup(t) // stores the chunk of file f
	tree, err := agent.LoadTree(ctx, e.c.cfg.Repo, e.c.local.Index, prior.Tree)
	if err != nil {
		t.Fatal(err)
	}
	stolen := tree.Nodes[0].Content[0]
	// A different path's session: no parent to inherit the chunk from.
	other := t.TempDir()
	admin, _ := agent.NewClient(e.srv.URL, "admin", "", time.Minute)
	if err := admin.Do(ctx, http.MethodPost, "/v1/nodes", RegisterRequest{Name: "n1", Paths: []PathSpec{{Path: other, Every: Duration(time.Hour)}}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := agent.OpenSession(ctx, e.node, "n1", other)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(false)
	if lookupFirst {
		var resp agent.LookupResponse
		if err := e.node.Do(ctx, http.MethodPost, "/v1/sessions/"+s.Info.ID+"/lookup", agent.LookupRequest{Blobs: []agent.BlobRef{{Type: repo.DataBlob, ID: stolen}}}, &resp); err != nil || resp.Found[0] == nil {
			t.Fatalf("lookup: %v %+v", err, resp)
		}
	}
	forged := repo.Tree{Nodes: []repo.Node{{Name: "x", Type: repo.NodeFile, Mode: 0o644, Size: tree.Nodes[0].Size, Content: []chunk.ID{stolen}}}}
	enc := forged.Encode()
	id := e.c.cfg.Repo.Hasher().Sum(enc)
	var packs []repo.PackInfo
	_, err = e.c.cfg.Repo.WithUploader(ctx, repo.UploadOptions{OnPack: func(p repo.PackInfo) error {
		packs = append(packs, p) // a single tree blob: one pack, one call
		return nil
	}}, func(ctx context.Context, up *repo.Uploader) error {
		_, err := up.Add(ctx, repo.TreeBlob, id, enc)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.node.Do(ctx, http.MethodPost, "/v1/sessions/"+s.Info.ID+"/packs", agent.RegisterPacksRequest{Packs: packs}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.Commit(ctx, &repo.Snapshot{Time: e.clock.Now(), Node: "n1", Path: other, Tree: id})
	return err
}

func TestCommitRefusesChunksTheSessionHadNoRightTo(t *testing.T) {
	e := newTestEnv(t)
	err := forgeCommit(t, e, false)
	var ae *agent.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity {
		t.Fatalf("commit of an unanswered chunk: %v, want 422", err)
	}
	// The same chunk, answered as stored in the session, is fine.
	if err := forgeCommit(t, e, true); err != nil {
		t.Fatalf("commit of an answered chunk: %v", err)
	}
}

func TestExpiredSessionCannotCommit(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	s, err := agent.OpenSession(ctx, e.node, "n1", e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(false)
	e.clock.Advance(2 * time.Minute) // past the lease, no renewal
	_, err = s.Commit(ctx, &repo.Snapshot{Time: e.clock.Now(), Node: "n1", Path: e.src, Tree: chunk.ID{1}})
	var ae *agent.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusGone {
		t.Fatalf("commit after the lease: %v, want 410", err)
	}
}

func TestGCKeepsWhatAnOpenSessionWasTold(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	first := e.backup(t)
	tree, _ := agent.LoadTree(ctx, e.c.cfg.Repo, e.c.local.Index, first.Tree)
	chunkID := tree.Nodes[0].Content[0]
	s, err := agent.OpenSession(ctx, e.node, "n1", e.src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(false)
	var resp agent.LookupResponse
	if err := e.node.Do(ctx, http.MethodPost, "/v1/sessions/"+s.Info.ID+"/lookup", agent.LookupRequest{Blobs: []agent.BlobRef{{Type: repo.DataBlob, ID: chunkID}}}, &resp); err != nil || resp.Found[0] == nil {
		t.Fatalf("lookup: %v", err)
	}
	// Forget every snapshot: only the session's answer keeps the chunk.
	if err := e.c.local.Forget(ctx, []repo.SnapshotID{first.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.GC(ctx, false); err == nil || !errors.Is(err, agent.ErrImplausible) {
		// With no snapshot left the collection refuses; that protects too.
		t.Logf("gc: %v", err)
	}
	if ok, _ := e.c.local.Index.Has(repo.DataBlob, chunkID); !ok {
		t.Fatal("chunk answered to an open session was collected")
	}
	// With another snapshot alive, gc runs and still keeps the chunk.
	other := filepath.Join(t.TempDir(), "g")
	os.WriteFile(other, []byte("unrelated"), 0o644)
	if _, err := agent.Backup(ctx, e.c.cfg.Repo, e.c.local.Index, agent.BackupOptions{Node: "n2", Path: other}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.GC(ctx, false); err != nil {
		t.Fatal(err)
	}
	loc, ok, _ := e.c.local.Index.Lookup(repo.DataBlob, chunkID)
	if !ok {
		t.Fatal("chunk answered to an open session was collected")
	}
	if _, err := e.c.cfg.Repo.ReadBlob(ctx, loc.Pack, loc.Entry); err != nil {
		t.Fatalf("the kept chunk is unreadable: %v", err)
	}
}

// GET /v1/runs answers at once without after, holds a request with after
// until the next run ends (here: a run against an agent that is not
// there, which fails) or a node goes, and refuses malformed parameters.
func TestRunsWaitsForTheNextChange(t *testing.T) {
	e := newTestEnv(t)
	e.c.Start()
	ctx := context.Background()
	admin, _ := agent.NewClient(e.srv.URL, "admin", "", time.Minute)
	runs := func(query string) RunsStatus {
		t.Helper()
		var st RunsStatus
		if err := admin.Do(ctx, http.MethodGet, "/v1/runs"+query, nil, &st); err != nil {
			t.Fatalf("GET /v1/runs%s: %v", query, err)
		}
		return st
	}
	st := runs("")
	if len(st.Nodes) != 1 || st.Nodes[0].Name != "n1" {
		t.Fatalf("nodes %+v, want n1", st.Nodes)
	}
	seq := st.Seq
	if again := runs(fmt.Sprintf("?after=%d&wait=20ms", seq)); again.Seq != seq {
		t.Fatalf("nothing happened, yet seq %d -> %d", seq, again.Seq)
	}

	tests := []struct {
		name   string
		change func()
		check  func(RunsStatus)
	}{
		{"a run ends", func() {
			if err := admin.Do(ctx, http.MethodPost, "/v1/backups", BackupNowRequest{Node: "n1"}, nil); err != nil {
				t.Error(err)
			}
		}, func(st RunsStatus) {
			p := st.Nodes[0].Paths[0]
			if p.LastRun.IsZero() || p.LastError == "" {
				t.Errorf("woken before the run's outcome was recorded: %+v", p)
			}
		}},
		{"a node goes", func() {
			if err := admin.Do(ctx, http.MethodDelete, "/v1/nodes/n1", nil, nil); err != nil {
				t.Error(err)
			}
		}, func(st RunsStatus) {
			if len(st.Nodes) != 0 {
				t.Errorf("woken with nodes %+v, want none", st.Nodes)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan RunsStatus, 1)
			go func() {
				var st RunsStatus
				err := admin.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/runs?after=%d&wait=50s", seq), nil, &st)
				if err != nil {
					t.Error(err)
				}
				got <- st
			}()
			tc.change()
			st := <-got
			if st.Seq <= seq {
				t.Fatalf("answered with seq %d, want past %d", st.Seq, seq)
			}
			tc.check(st)
			seq = st.Seq
		})
	}

	for _, q := range []string{"?after=x&wait=1s", "?after=1&wait=soon", "?after=1"} {
		err := admin.Do(ctx, http.MethodGet, "/v1/runs"+q, nil, nil)
		var ae *agent.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("GET /v1/runs%s: %v, want 400", q, err)
		}
	}
}

// TestSessionsHoldASharedRepositoryLock: while a session is open, the
// coordinator holds a shared lock in the bucket, so that a collection by
// a process outside the fleet (embedded mode on another machine) waits;
// a session cannot open while such a collection holds the repository.
func TestSessionsHoldASharedRepositoryLock(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	r := e.c.cfg.Repo
	locks := func() []repo.LockObject {
		t.Helper()
		ls, err := r.Locks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	gc, err := r.PutLock(ctx, repo.Lock{Owner: "elsewhere", Exclusive: true, Op: "gc", Host: "laptop2", Time: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.OpenSession(ctx, e.node, "n1", e.src)
	var ae *agent.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(err.Error(), "laptop2") {
		t.Fatalf("session beside a collection elsewhere: %v, want 409 naming the holder", err)
	}
	if err := r.DeleteLock(ctx, gc); err != nil {
		t.Fatal(err)
	}

	s, err := agent.OpenSession(ctx, e.node, "n1", e.src)
	if err != nil {
		t.Fatal(err)
	}
	if ls := locks(); len(ls) != 1 || ls[0].Exclusive || ls[0].Op != "coordinator" {
		t.Fatalf("locks with a session open: %+v", ls)
	}
	if err := e.c.releaseLock(true); err != nil || len(locks()) != 1 {
		t.Fatalf("lock released under an open session: %v", err)
	}
	s.Close(false)
	if err := e.c.releaseLock(true); err != nil {
		t.Fatal(err)
	}
	if ls := locks(); len(ls) != 0 {
		t.Fatalf("locks with no session open: %+v", ls)
	}
}

// TestRestartedCoordinatorRemovesItsPredecessorsLock: a coordinator
// container restarted after a crash has its predecessor's host name and
// pid; the lock that one left would hold off every other machine's gc for
// half an hour. The new coordinator holds the same index, so it knows the
// lock is dead and removes it, and only it.
func TestRestartedCoordinatorRemovesItsPredecessorsLock(t *testing.T) {
	ctx := context.Background()
	r, err := repo.Init(ctx, mem.New(), "pw", repo.InitOptions{KDF: repo.KDFParams{Time: 1, Memory: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := Open(ctx, Config{Repo: r, StateDir: dir, AdminToken: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	instance := c.local.Index.Instance()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	put := func(owner, instance string) string {
		t.Helper()
		name, err := r.PutLock(ctx, repo.Lock{Owner: owner, Op: "coordinator", Host: host, PID: 1, PIDNS: "pid:[1]", Instance: instance, Time: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	put("the crashed coordinator", instance)
	live := put("a coordinator of another state folder", "another index")

	c, err = Open(ctx, Config{Repo: r, StateDir: dir, AdminToken: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ls, err := r.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Name != live {
		t.Fatalf("locks after the restart: %+v, want only %s", ls, live)
	}
}
