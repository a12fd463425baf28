package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cairn-backup/cairn/agent"
)

type timerItem struct {
	at         time.Time
	node, path string
}

// timerHeap orders pending runs by time. It may hold stale items (a path
// rescheduled or removed); the loop checks each against the path's state.
type timerHeap struct{ items []timerItem }

func (h *timerHeap) Len() int           { return len(h.items) }
func (h *timerHeap) Less(i, j int) bool { return h.items[i].at.Before(h.items[j].at) }
func (h *timerHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *timerHeap) Push(x any)         { h.items = append(h.items, x.(timerItem)) }
func (h *timerHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}
func (h *timerHeap) push(at time.Time, node, path string) {
	heap.Push(h, timerItem{at: at, node: node, path: path})
}

// loop is the one scheduling loop: it sleeps until the earliest due run
// and hands due runs to the workers.
func (c *Coordinator) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := c.cfg.Now()
		var due []timerItem
		for c.heap.Len() > 0 && !c.heap.items[0].at.After(now) {
			it := heap.Pop(&c.heap).(timerItem)
			ps := c.paths[key(it.node, it.path)]
			if ps == nil || !ps.NextRun.Equal(it.at) {
				continue // stale: removed or rescheduled
			}
			if c.running[key(it.node, it.path)] {
				continue // rescheduled when the running one ends
			}
			due = append(due, it)
		}
		wait := time.Hour
		if c.heap.Len() > 0 {
			wait = c.heap.items[0].at.Sub(now)
		}
		c.mu.Unlock()
		for _, it := range due {
			c.dispatch(ctx, it)
		}
		if len(due) > 0 {
			continue
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// dispatch gives a due run to a free worker, or puts it back a little later
// when all workers are busy (the pool is bounded).
func (c *Coordinator) dispatch(ctx context.Context, it timerItem) {
	k := key(it.node, it.path)
	c.mu.Lock()
	c.running[k] = true
	c.mu.Unlock()
	select {
	case c.jobs <- job{it.node, it.path}:
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
		c.mu.Lock()
		delete(c.running, k)
		if ps := c.paths[k]; ps != nil {
			ps.NextRun = c.cfg.Now().Add(250 * time.Millisecond)
			c.heap.push(ps.NextRun, it.node, it.path)
		}
		c.mu.Unlock()
	}
}

func (c *Coordinator) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-c.jobs:
			c.run(ctx, j.node, j.path)
		}
	}
}

// run performs one backup of node:path through its agent and schedules the
// next one.
func (c *Coordinator) run(ctx context.Context, node, path string) {
	k := key(node, path)
	c.mu.Lock()
	spec, n, ok := c.spec(node, path)
	var client *agent.Client
	var err error
	if ok {
		client, err = c.agentClient(n, c.cfg.RunTimeout)
	}
	c.mu.Unlock()
	if !ok {
		c.mu.Lock()
		delete(c.running, k)
		c.mu.Unlock()
		return
	}
	start := c.cfg.Now()
	var resp agent.BackupResponse
	if err == nil {
		err = client.Do(ctx, http.MethodPost, "/v1/backup", agent.BackupRequest{Path: path}, &resp)
	}
	now := c.cfg.Now()
	every := time.Duration(spec.Every)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.noteStatusChange()
	delete(c.running, k)
	ps := c.paths[k]
	n = c.nodes[node]
	if ps == nil || n == nil {
		return // unregistered while running
	}
	ps.LastRun = start
	if err == nil {
		ps.LastSuccess, ps.LastError, ps.Failures, ps.LastSnapshot = now, "", 0, resp.ID
		ps.NextRun = start.Add(every + c.jitter(every))
		if !ps.NextRun.After(now) {
			ps.NextRun = now.Add(every / 10)
		}
		c.setDown(n, false, now)
		c.metrics.backupDone(node, path, resp.Summary, now)
	} else {
		if ctx.Err() != nil {
			return // shutting down; the schedule resumes from the saved state
		}
		ps.Failures++
		ps.LastError = err.Error()
		ps.NextRun = now.Add(backoff(every, ps.Failures))
		c.metrics.backupFailed()
		if errors.Is(err, agent.ErrUnreachable) {
			c.setDown(n, true, now)
		} else {
			c.setDown(n, false, now) // it answered, with an error
		}
		c.logf("backup of %s:%s failed (%d in a row), next try in %s: %v", node, path, ps.Failures, ps.NextRun.Sub(now).Round(time.Millisecond), err)
	}
	if c.again[k] {
		delete(c.again, k)
		ps.NextRun = now
	}
	c.savePath(node, path, ps)
	c.heap.push(ps.NextRun, node, path)
	c.poke()
}

// probeLoop asks down nodes for their health, so a node that returns is
// marked up (and its paths run) without waiting for its backoff.
func (c *Coordinator) probeLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		var down []*Node
		for _, n := range c.nodes {
			if n.Down {
				down = append(down, n)
			}
		}
		c.mu.Unlock()
		for _, n := range down {
			cl, err := c.agentClient(n, 2*time.Second)
			if err != nil {
				continue
			}
			if err := cl.Do(ctx, http.MethodGet, "/v1/health", nil, nil); err != nil {
				continue
			}
			c.mu.Lock()
			now := c.cfg.Now()
			c.setDown(n, false, now)
			for _, p := range n.Paths {
				if ps := c.paths[key(n.Name, p.Path)]; ps != nil && ps.NextRun.After(now) {
					ps.NextRun = now
					c.heap.push(now, n.Name, p.Path)
				}
			}
			c.mu.Unlock()
			c.poke()
		}
	}
}

// reapLoop ends sessions whose lease expired; their roots go with them.
func (c *Coordinator) reapLoop(ctx context.Context) {
	t := time.NewTicker(max(c.cfg.Lease/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		now := c.cfg.Now()
		for id, s := range c.sessions {
			if now.After(s.expires) {
				delete(c.sessions, id)
				c.logf("session %s of %s:%s expired", id[:8], s.node, s.path)
			}
		}
		c.metrics.sessions.Set(float64(len(c.sessions)))
		c.mu.Unlock()
		if err := c.releaseLock(true); err != nil {
			c.logf("release repository lock: %v", err)
		}
	}
}

func (c *Coordinator) gcLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.GCEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.GC(ctx, false); err != nil && ctx.Err() == nil {
			c.logf("scheduled gc: %v", err)
		}
	}
}
