package scheduler

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

// caller is who a request's bearer token says it is.
type caller struct {
	admin  bool
	enroll bool
	node   string // set for a node's own token
}

func (c *Coordinator) identify(r *http.Request) (caller, bool) {
	if agent.TokenOK(r, c.cfg.AdminToken) {
		return caller{admin: true}, true
	}
	if c.cfg.EnrollToken != "" && agent.TokenOK(r, c.cfg.EnrollToken) {
		return caller{enroll: true}, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return caller{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if subtle.ConstantTimeCompare([]byte(n.Token), []byte(tok)) == 1 {
			return caller{node: n.Name}, true
		}
	}
	return caller{}, false
}

type handler func(w http.ResponseWriter, r *http.Request, who caller)

func (c *Coordinator) authed(h handler, adminOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := c.identify(r)
		if !ok {
			agent.WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		if adminOnly && !who.admin {
			agent.WriteError(w, http.StatusForbidden, "this call needs the admin token")
			return
		}
		h(w, r, who)
	}
}

// Handler returns the coordinator's HTTP API.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	// Admin.
	mux.HandleFunc("POST /v1/nodes", c.authed(c.hRegister, false))
	mux.HandleFunc("GET /v1/nodes", c.authed(c.hNodes, true))
	mux.HandleFunc("GET /v1/runs", c.authed(c.hRuns, true))
	mux.HandleFunc("DELETE /v1/nodes/{name}", c.authed(c.hUnregister, true))
	mux.HandleFunc("GET /v1/snapshots", c.authed(c.hSnapshots, true))
	mux.HandleFunc("POST /v1/backups", c.authed(c.hBackupNow, true))
	mux.HandleFunc("GET /v1/restore", c.authed(c.hRestoreTar, true))
	mux.HandleFunc("POST /v1/restore-on-node", c.authed(c.hRestoreOnNode, true))
	mux.HandleFunc("POST /v1/gc", c.authed(c.hGC, true))
	mux.Handle("GET /metrics", c.authed(func(w http.ResponseWriter, r *http.Request, _ caller) {
		promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	}, true))
	// Agents.
	mux.HandleFunc("POST /v1/sessions", c.authed(c.hOpenSession, false))
	mux.HandleFunc("POST /v1/sessions/{id}/renew", c.authed(c.hRenew, false))
	mux.HandleFunc("POST /v1/sessions/{id}/lookup", c.authed(c.hLookup, false))
	mux.HandleFunc("POST /v1/sessions/{id}/packs", c.authed(c.hPacks, false))
	mux.HandleFunc("POST /v1/sessions/{id}/commit", c.authed(c.hCommit, false))
	mux.HandleFunc("DELETE /v1/sessions/{id}", c.authed(c.hEndSession, false))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		agent.WriteError(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return agent.Recover(c.cfg.Log, mux)
}

// fail maps an error to a status code and a JSON message.
func fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, errForbidden):
		status = http.StatusForbidden
	case errors.Is(err, errNoSession):
		status = http.StatusGone
	case errors.Is(err, errNotFound), errors.Is(err, repo.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errConflict), errors.Is(err, agent.ErrLocked):
		status = http.StatusConflict
	case errors.Is(err, errRefused):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, agent.ErrAmbiguous), errors.Is(err, agent.ErrWouldForgetAll):
		status = http.StatusBadRequest
	}
	var ae *agent.APIError
	if errors.As(err, &ae) && status == http.StatusInternalServerError {
		status = http.StatusBadGateway
	}
	agent.WriteError(w, status, "%v", err)
}

// RegisterRequest registers a node or adds paths to it.
type RegisterRequest struct {
	Name  string     `json:"name"`
	Addr  string     `json:"addr"`
	Paths []PathSpec `json:"paths"`
}

// RegisterResponse carries the node's token: it authenticates the agent to
// the coordinator and the coordinator to the agent.
type RegisterResponse struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (c *Coordinator) hRegister(w http.ResponseWriter, r *http.Request, who caller) {
	var req RegisterRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	if !nodeName.MatchString(req.Name) {
		agent.WriteError(w, http.StatusBadRequest, "node name %q: use letters, digits, '.', '_' and '-' (at most 63)", req.Name)
		return
	}
	for _, p := range req.Paths {
		if !filepath.IsAbs(p.Path) || filepath.Clean(p.Path) != p.Path {
			agent.WriteError(w, http.StatusBadRequest, "path %q must be absolute and clean", p.Path)
			return
		}
		if time.Duration(p.Every) < time.Second {
			agent.WriteError(w, http.StatusBadRequest, "path %s: interval %s is under one second", p.Path, time.Duration(p.Every))
			return
		}
		if p.Keep < 0 {
			agent.WriteError(w, http.StatusBadRequest, "path %s: keep must not be negative", p.Path)
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[req.Name]
	switch {
	case who.admin:
	case who.node == req.Name && n != nil:
	case who.enroll && n == nil:
	default:
		agent.WriteError(w, http.StatusForbidden, "this token cannot register node %s", req.Name)
		return
	}
	now := c.cfg.Now()
	if n == nil {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			fail(w, err)
			return
		}
		n = &Node{Name: req.Name, Token: hex.EncodeToString(b[:]), LastSeen: now}
		c.nodes[n.Name] = n
		c.logf("node %s registered at %s", n.Name, req.Addr)
	}
	if req.Addr != "" {
		n.Addr = req.Addr
	}
	if n.Addr == "" {
		agent.WriteError(w, http.StatusBadRequest, "node %s has no address: give addr HOST:PORT", n.Name)
		return
	}
	for _, p := range req.Paths {
		replaced := false
		for i := range n.Paths {
			if n.Paths[i].Path == p.Path {
				n.Paths[i], replaced = p, true
			}
		}
		if !replaced {
			n.Paths = append(n.Paths, p)
		}
		k := key(n.Name, p.Path)
		ps := c.paths[k]
		if ps == nil {
			ps = &PathState{}
			c.paths[k] = ps
		}
		// A new or changed path runs soon, then on its interval.
		ps.NextRun = now.Add(c.jitter(time.Duration(p.Every)) / 4).Add(time.Duration(p.Every) / 20)
		c.heap.push(ps.NextRun, n.Name, p.Path)
		c.savePath(n.Name, p.Path, ps)
	}
	c.saveNode(n)
	c.refreshNodeMetricsLocked()
	c.poke()
	agent.WriteJSON(w, http.StatusOK, RegisterResponse{Name: n.Name, Token: n.Token})
}

func (c *Coordinator) hUnregister(w http.ResponseWriter, r *http.Request, _ caller) {
	name, path := r.PathValue("name"), r.URL.Query().Get("path")
	c.mu.Lock()
	defer c.mu.Unlock()
	// Whoever waits for a run of what goes hears of it now.
	defer c.noteStatusChange()
	n := c.nodes[name]
	if n == nil {
		agent.WriteError(w, http.StatusNotFound, "no node %s", name)
		return
	}
	if path == "" {
		for _, p := range n.Paths {
			delete(c.paths, key(name, p.Path))
		}
		delete(c.nodes, name)
		if err := c.state.deleteNode(name); err != nil {
			fail(w, err)
			return
		}
		c.refreshNodeMetricsLocked()
		agent.WriteJSON(w, http.StatusOK, map[string]string{"unregistered": name})
		return
	}
	i := -1
	for j, p := range n.Paths {
		if p.Path == path {
			i = j
		}
	}
	if i < 0 {
		agent.WriteError(w, http.StatusNotFound, "node %s has no path %s", name, path)
		return
	}
	n.Paths = append(n.Paths[:i], n.Paths[i+1:]...)
	delete(c.paths, key(name, path))
	c.saveNode(n)
	if err := c.state.deletePath(name, path); err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]string{"unregistered": name + ":" + path})
}

// NodeStatus is one node in `cairn node list`.
type NodeStatus struct {
	Name      string       `json:"name"`
	Addr      string       `json:"addr"`
	Up        bool         `json:"up"`
	LastSeen  time.Time    `json:"last_seen"`
	DownSince time.Time    `json:"down_since,omitzero"`
	Paths     []PathStatus `json:"paths"`
}

// PathStatus is one path of a node with its schedule.
type PathStatus struct {
	PathSpec
	PathState
	Running bool `json:"running"`
}

func (c *Coordinator) hNodes(w http.ResponseWriter, _ *http.Request, _ caller) {
	c.mu.Lock()
	out := c.nodeStatusLocked()
	c.mu.Unlock()
	agent.WriteJSON(w, http.StatusOK, out)
}

// RunsStatus is every node's status after the Seq-th status change.
type RunsStatus struct {
	// Seq counts the changes since the coordinator started: runs ended,
	// nodes and paths unregistered.
	Seq   uint64       `json:"seq"`
	Nodes []NodeStatus `json:"nodes"`
}

// maxRunsWait caps how long GET /v1/runs holds a request.
const maxRunsWait = time.Minute

// hRuns answers every node's status, as GET /v1/nodes does, with the count
// of status changes; with after=N and wait=DURATION it first waits until
// the count passes N or the duration (at most a minute) elapses. A caller
// waiting for a backup passes the Seq of its previous answer and so hears
// of every run's end at once, where polling found a 220 ms no-change backup
// of go1.24.0 done only 150-200 ms after it ended.
func (c *Coordinator) hRuns(w http.ResponseWriter, r *http.Request, _ caller) {
	q := r.URL.Query()
	if q.Has("after") {
		after, err := strconv.ParseUint(q.Get("after"), 10, 64)
		if err != nil {
			agent.WriteError(w, http.StatusBadRequest, "after=%q: not a run count", q.Get("after"))
			return
		}
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil || wait < 0 {
			agent.WriteError(w, http.StatusBadRequest, "wait=%q: not a duration such as 20s", q.Get("wait"))
			return
		}
		timer := time.NewTimer(min(wait, maxRunsWait))
		defer timer.Stop()
	waiting:
		for {
			c.mu.Lock()
			seq, ended := c.statusSeq, c.statusChanged
			c.mu.Unlock()
			if seq > after {
				break
			}
			select {
			case <-ended: // look again
			case <-timer.C:
				break waiting
			case <-r.Context().Done():
				return
			}
		}
	}
	c.mu.Lock()
	out := RunsStatus{Seq: c.statusSeq, Nodes: c.nodeStatusLocked()}
	c.mu.Unlock()
	agent.WriteJSON(w, http.StatusOK, out)
}

// nodeStatusLocked lists the nodes and their paths by name; c.mu is held.
func (c *Coordinator) nodeStatusLocked() []NodeStatus {
	out := make([]NodeStatus, 0, len(c.nodes))
	for _, n := range c.nodes {
		ns := NodeStatus{Name: n.Name, Addr: n.Addr, Up: !n.Down, LastSeen: n.LastSeen, DownSince: n.DownSince}
		for _, p := range n.Paths {
			ps := PathStatus{PathSpec: p, Running: c.running[key(n.Name, p.Path)]}
			if st := c.paths[key(n.Name, p.Path)]; st != nil {
				ps.PathState = *st
			}
			ns.Paths = append(ns.Paths, ps)
		}
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SnapshotInfo is a catalog entry on the wire.
type SnapshotInfo struct {
	ID string `json:"id"`
	*repo.Snapshot
}

func (c *Coordinator) hSnapshots(w http.ResponseWriter, r *http.Request, _ caller) {
	sns, err := c.local.Index.Snapshots()
	if err != nil {
		fail(w, err)
		return
	}
	sel := agent.Selector{Node: r.URL.Query().Get("node"), Path: r.URL.Query().Get("path")}
	out := []SnapshotInfo{}
	for _, sn := range sns {
		if sel.Matches(sn) {
			out = append(out, SnapshotInfo{ID: string(sn.ID), Snapshot: sn})
		}
	}
	agent.WriteJSON(w, http.StatusOK, out)
}

// BackupNowRequest asks for an immediate run of a node's paths (or one).
type BackupNowRequest struct {
	Node string `json:"node"`
	Path string `json:"path,omitempty"`
}

func (c *Coordinator) hBackupNow(w http.ResponseWriter, r *http.Request, _ caller) {
	var req BackupNowRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[req.Node]
	if n == nil {
		agent.WriteError(w, http.StatusNotFound, "no node %s", req.Node)
		return
	}
	now := c.cfg.Now()
	var queued []string
	for _, p := range n.Paths {
		if req.Path != "" && p.Path != req.Path {
			continue
		}
		k := key(n.Name, p.Path)
		if c.running[k] {
			// Not dropped: a run that started before this request may
			// miss what the caller wants saved.
			c.again[k] = true
		} else {
			ps := c.paths[k]
			ps.NextRun = now
			c.heap.push(now, n.Name, p.Path)
		}
		queued = append(queued, n.Name+":"+p.Path)
	}
	if len(queued) == 0 {
		agent.WriteError(w, http.StatusNotFound, "node %s has no path %s", req.Node, req.Path)
		return
	}
	c.poke()
	agent.WriteJSON(w, http.StatusAccepted, BackupNowResponse{Queued: queued, At: now})
}

// BackupNowResponse lists the queued paths; each runs at or after At (the
// coordinator's clock), so a caller waiting for them compares run start
// times with it.
type BackupNowResponse struct {
	Queued []string  `json:"queued"`
	At     time.Time `json:"at"`
}

func (c *Coordinator) find(text string) (*repo.Snapshot, agent.Selector, error) {
	sel, err := agent.ParseSelector(text)
	if err != nil {
		return nil, sel, fmt.Errorf("%v: %w", err, errBadRequest)
	}
	sn, err := c.local.Find(sel)
	return sn, sel, err
}

// hRestoreTar streams a snapshot as tar, gzip'd or zstd'd. An error after
// the stream started is reported in the X-Cairn-Error trailer, so a client
// never mistakes a cut stream for a whole one.
func (c *Coordinator) hRestoreTar(w http.ResponseWriter, r *http.Request, _ caller) {
	sn, sel, err := c.find(r.URL.Query().Get("snapshot"))
	if err != nil {
		fail(w, err)
		return
	}
	if _, _, err := agent.Resolve(r.Context(), c.cfg.Repo, c.local.Index, sn, sel.Sub); err != nil {
		fail(w, err)
		return
	}
	format := r.URL.Query().Get("format")
	var out io.Writer = w
	var closer io.Closer
	switch format {
	case "", "tar":
		w.Header().Set("Content-Type", "application/x-tar")
	case "gzip":
		w.Header().Set("Content-Type", "application/gzip")
		gz := gzip.NewWriter(w)
		out, closer = gz, gz
	case "zstd":
		w.Header().Set("Content-Type", "application/zstd")
		zw, err := zstd.NewWriter(w)
		if err != nil {
			fail(w, err)
			return
		}
		out, closer = zw, zw
	default:
		agent.WriteError(w, http.StatusBadRequest, "format %q: want tar, gzip or zstd", format)
		return
	}
	w.Header().Set("Trailer", "X-Cairn-Error")
	w.Header().Set("X-Cairn-Snapshot", string(sn.ID))
	w.WriteHeader(http.StatusOK)
	err = agent.WriteTar(r.Context(), c.cfg.Repo, c.local.Index, sn, sel.Sub, out)
	if err == nil && closer != nil {
		err = closer.Close()
	}
	if err != nil {
		c.logf("restore of %s: %v", sn.ID.Short(), err)
		w.Header().Set("X-Cairn-Error", err.Error())
	}
}

// RestoreOnNodeRequest asks the snapshot's own node to restore it in place.
type RestoreOnNodeRequest struct {
	Snapshot string `json:"snapshot"`
	Target   string `json:"target"`
}

func (c *Coordinator) hRestoreOnNode(w http.ResponseWriter, r *http.Request, _ caller) {
	var req RestoreOnNodeRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	sn, sel, err := c.find(req.Snapshot)
	if err != nil {
		fail(w, err)
		return
	}
	c.mu.Lock()
	n := c.nodes[sn.Node]
	var cl *agent.Client
	if n != nil {
		cl, err = c.agentClient(n, c.cfg.RunTimeout)
	}
	c.mu.Unlock()
	if n == nil {
		agent.WriteError(w, http.StatusNotFound, "node %s of snapshot %s is not registered", sn.Node, sn.ID.Short())
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	var resp agent.RestoreResponse
	if err := cl.Do(r.Context(), http.MethodPost, "/v1/restore", agent.RestoreRequest{Snapshot: string(sn.ID), Sub: sel.Sub, Target: req.Target}, &resp); err != nil {
		var ae *agent.APIError
		if errors.As(err, &ae) {
			agent.WriteError(w, ae.Status, "node %s: %s", sn.Node, ae.Message)
			return
		}
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, resp)
}

func (c *Coordinator) hGC(w http.ResponseWriter, r *http.Request, _ caller) {
	st, err := c.GC(r.Context(), r.URL.Query().Get("dry_run") == "1")
	if err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, st)
}

func (c *Coordinator) hOpenSession(w http.ResponseWriter, r *http.Request, who caller) {
	var req agent.OpenSessionRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	if !who.admin && who.node != req.Node {
		agent.WriteError(w, http.StatusForbidden, "a token of node %q cannot act for node %q", who.node, req.Node)
		return
	}
	info, err := c.openSession(req.Node, req.Path)
	if err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, info)
}

func (who caller) nodeFilter() string {
	if who.admin {
		return ""
	}
	if who.node == "" {
		return "\x00nobody"
	}
	return who.node
}

func (c *Coordinator) hRenew(w http.ResponseWriter, r *http.Request, who caller) {
	if err := c.renew(r.PathValue("id"), who.nodeFilter()); err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]bool{"renewed": true})
}

func (c *Coordinator) hEndSession(w http.ResponseWriter, r *http.Request, who caller) {
	if err := c.endSession(r.PathValue("id"), who.nodeFilter()); err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]bool{"ended": true})
}

func (c *Coordinator) hLookup(w http.ResponseWriter, r *http.Request, who caller) {
	var req agent.LookupRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	found, err := c.lookup(r.PathValue("id"), who.nodeFilter(), req.Blobs)
	if err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, agent.LookupResponse{Found: found})
}

func (c *Coordinator) hPacks(w http.ResponseWriter, r *http.Request, who caller) {
	var req agent.RegisterPacksRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	if err := c.registerPacks(r.PathValue("id"), who.nodeFilter(), req.Packs); err != nil {
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, map[string]int{"registered": len(req.Packs)})
}

func (c *Coordinator) hCommit(w http.ResponseWriter, r *http.Request, who caller) {
	var req agent.CommitRequest
	if !agent.ReadJSON(w, r, &req) {
		return
	}
	id, err := c.commit(r.Context(), r.PathValue("id"), who.nodeFilter(), req.Snapshot)
	if err != nil {
		c.logf("commit refused: %v", err)
		fail(w, err)
		return
	}
	agent.WriteJSON(w, http.StatusOK, agent.CommitResponse{ID: string(id)})
}
