package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/chunk"
	"github.com/cairn-backup/cairn/repo"
)

// Config configures a coordinator.
type Config struct {
	Repo     *repo.Repository
	StateDir string // holds the coordinator state and the repository index
	// AdminToken authorises admin calls; EnrollToken (optional) lets agents
	// register themselves as new nodes.
	AdminToken  string
	EnrollToken string
	// Lease is how long a session lives without renewal (default 60s).
	Lease time.Duration
	// Workers bounds backups run at once (default 4).
	Workers int
	// GCEvery runs garbage collection on a schedule; zero never.
	GCEvery time.Duration
	// DefaultKeep applies to paths registered without Keep (default: the
	// repository's).
	DefaultKeep int
	// RunTimeout bounds one backup run (default 6h).
	RunTimeout time.Duration
	// AgentScheme is "http" or "https" for calls to agents.
	AgentScheme string
	AgentCAFile string
	Now         func() time.Time
	Log         func(string)
	Version     string
}

// Coordinator schedules and serves a fleet.
type Coordinator struct {
	cfg     Config
	local   *agent.Local
	state   *stateDB
	metrics *metrics

	mu      sync.Mutex
	nodes   map[string]*Node
	paths   map[string]*PathState // by node + "\x00" + path
	running map[string]bool
	// again marks paths asked to run now while running: they run once
	// more as soon as the current run ends.
	again    map[string]bool
	sessions map[string]*session
	// condemned, while a collection is deleting, says which blobs lookups
	// must answer as unseen.
	condemned func(blobRef) bool
	gcRunning bool
	// gcCommitted are root trees of snapshots committed while a collection
	// runs: it listed live snapshots before they existed.
	gcCommitted []chunk.ID

	// statusSeq counts the changes GET /v1/runs waits for: runs ended
	// and nodes or paths unregistered. statusChanged is closed, and
	// replaced, at each.
	statusSeq     uint64
	statusChanged chan struct{}

	// repoLock is a shared lock on the repository, held while sessions
	// are open: it keeps collections by processes that share the bucket
	// without this coordinator (embedded mode elsewhere) from deleting
	// what the sessions use. lockCtx ends if the lock is lost.
	lockMu   sync.Mutex
	repoLock *agent.RepoLock
	lockCtx  context.Context

	heap   timerHeap
	wake   chan struct{}
	jobs   chan job
	wg     sync.WaitGroup
	stop   context.CancelFunc
	runCtx context.Context
}

type job struct{ node, path string }

func key(node, path string) string { return node + "\x00" + path }

// Open opens the coordinator's state and index and syncs the index with the
// bucket. Call Start to begin scheduling.
func Open(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Repo == nil || cfg.StateDir == "" {
		return nil, errors.New("coordinator: repository and state folder are required")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("coordinator: an admin token is required")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 60 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.DefaultKeep <= 0 {
		cfg.DefaultKeep = cfg.Repo.Config().Keep
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 6 * time.Hour
	}
	if cfg.AgentScheme == "" {
		cfg.AgentScheme = "http"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	local, _, err := agent.OpenLocal(ctx, cfg.Repo, filepath.Join(cfg.StateDir, cfg.Repo.Config().ID, "index"))
	if err != nil {
		return nil, err
	}
	st, err := openStateDB(filepath.Join(cfg.StateDir, cfg.Repo.Config().ID, "coordinator"))
	if err != nil {
		local.Close()
		return nil, err
	}
	c := &Coordinator{
		cfg: cfg, local: local, state: st, metrics: newMetrics(),
		nodes: map[string]*Node{}, paths: map[string]*PathState{}, running: map[string]bool{}, again: map[string]bool{},
		statusChanged: make(chan struct{}),
		sessions:      map[string]*session{}, wake: make(chan struct{}, 1), jobs: make(chan job),
	}
	// A coordinator restarted in a container comes back with the host
	// name and pid of its predecessor, whose lock it alone can tell dead
	// (it now holds the index that one held): machines sharing the bucket
	// need not wait half an hour for it to age.
	if removed, err := agent.RemoveLocks(ctx, cfg.Repo, local.Index.Instance(), false); err != nil {
		c.logf("remove stale repository locks: %v", err)
	} else {
		for _, o := range removed {
			c.logf("removed the stale %s lock of %s@%s (pid %d)", o.Op, o.User, o.Host, o.PID)
		}
	}
	nodes, err := st.nodes()
	if err != nil {
		c.Close()
		return nil, err
	}
	now := cfg.Now()
	for _, n := range nodes {
		c.nodes[n.Name] = n
		for _, p := range n.Paths {
			var ps PathState
			if _, err := st.getJSON(pathKey(n.Name, p.Path), &ps); err != nil {
				c.Close()
				return nil, err
			}
			// A run missed while the coordinator was down runs once, now.
			if ps.NextRun.IsZero() || ps.NextRun.Before(now) {
				ps.NextRun = now.Add(c.jitter(time.Duration(p.Every)) / 4)
			}
			c.paths[key(n.Name, p.Path)] = &ps
			c.heap.push(ps.NextRun, n.Name, p.Path)
		}
	}
	c.refreshNodeMetrics()
	return c, nil
}

func (c *Coordinator) logf(format string, a ...any) {
	if c.cfg.Log != nil {
		c.cfg.Log(fmt.Sprintf(format, a...))
	}
}

// Start runs the scheduling loop, the workers, the session reaper, the
// health prober and scheduled garbage collection until Close.
func (c *Coordinator) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.runCtx = cancel, ctx
	for range c.cfg.Workers {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.worker(ctx) }()
	}
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.loop(ctx) }()
	go func() { defer c.wg.Done(); c.reapLoop(ctx) }()
	go func() { defer c.wg.Done(); c.probeLoop(ctx) }()
	if c.cfg.GCEvery > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.gcLoop(ctx) }()
	}
}

// Close stops everything and closes the state.
func (c *Coordinator) Close() error {
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	return errors.Join(c.releaseLock(false), c.state.close(), c.local.Close())
}

// holdLockLocked takes the coordinator's shared lock unless it holds it.
// The caller holds lockMu.
func (c *Coordinator) holdLockLocked(ctx context.Context) error {
	if c.repoLock != nil && c.lockCtx.Err() == nil {
		return nil
	}
	if c.repoLock != nil {
		_ = c.repoLock.Unlock(ctx)
		c.repoLock = nil
	}
	lctx, lk, err := c.local.Lock(context.WithoutCancel(ctx), "coordinator", false)
	if err != nil {
		return err
	}
	c.repoLock, c.lockCtx = lk, lctx
	return nil
}

// releaseLock gives the shared lock back; with idleOnly, only when no
// session is open. openSession holds lockMu from taking the lock to
// registering its session, so none can open in between.
func (c *Coordinator) releaseLock(idleOnly bool) error {
	c.lockMu.Lock()
	defer c.lockMu.Unlock()
	if idleOnly {
		c.mu.Lock()
		idle := len(c.sessions) == 0
		c.mu.Unlock()
		if !idle {
			return nil
		}
	}
	if c.repoLock == nil {
		return nil
	}
	err := c.repoLock.Unlock(context.Background())
	c.repoLock = nil
	return err
}

// jitter returns a random offset in ±10 % of every, at most ±30 s, so
// paths registered together spread out.
func (c *Coordinator) jitter(every time.Duration) time.Duration {
	span := min(every/10, 30*time.Second)
	if span <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(2*span))) - span
}

// backoff is the delay before retrying a failed run: doubling from a tenth
// of the interval, never more than the interval (a path is never tried less
// often than it is scheduled) and at least a second.
func backoff(every time.Duration, failures int) time.Duration {
	d := every / 10
	for i := 1; i < failures && d < every; i++ {
		d *= 2
	}
	return max(min(d, every), time.Second)
}

// noteStatusChange wakes the callers of GET /v1/runs; c.mu is held.
func (c *Coordinator) noteStatusChange() {
	c.statusSeq++
	close(c.statusChanged)
	c.statusChanged = make(chan struct{})
}

func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Coordinator) spec(node, path string) (PathSpec, *Node, bool) {
	n := c.nodes[node]
	if n == nil {
		return PathSpec{}, nil, false
	}
	for _, p := range n.Paths {
		if p.Path == path {
			return p, n, true
		}
	}
	return PathSpec{}, n, false
}

func (c *Coordinator) savePath(node, path string, ps *PathState) {
	if err := c.state.putJSON(pathKey(node, path), ps); err != nil {
		c.logf("save schedule of %s:%s: %v", node, path, err)
	}
}

func (c *Coordinator) saveNode(n *Node) {
	if err := c.state.putJSON(nodeKey(n.Name), n); err != nil {
		c.logf("save node %s: %v", n.Name, err)
	}
}

func (c *Coordinator) agentClient(n *Node, timeout time.Duration) (*agent.Client, error) {
	return agent.NewClient(c.cfg.AgentScheme+"://"+n.Addr, n.Token, c.cfg.AgentCAFile, timeout)
}

// setDown marks a node down or up, logging and counting the change.
func (c *Coordinator) setDown(n *Node, down bool, now time.Time) {
	if n.Down == down {
		if !down {
			n.LastSeen = now
		}
		return
	}
	n.Down = down
	if down {
		n.DownSince = now
		c.logf("node %s is down", n.Name)
	} else {
		n.DownSince = time.Time{}
		n.LastSeen = now
		c.logf("node %s is up", n.Name)
	}
	c.saveNode(n)
	c.refreshNodeMetricsLocked()
}
