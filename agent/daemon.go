package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/repo"
)

// DaemonConfig configures the agent daemon of one node.
type DaemonConfig struct {
	Node        string
	Token       string // the node's token: the coordinator must present it
	Coordinator *Client
	Repo        *repo.Repository
	// IndexDir holds the agent's own index, used only to restore in place.
	IndexDir string
	// RestoreRoots are the folders under which the coordinator may ask for
	// a restore in place; none means restores in place are refused.
	RestoreRoots []string
	Excludes     []string
	Version      string
	Log          func(string)
}

// Daemon serves the agent API: the coordinator asks it to back up a path
// or to restore a snapshot on this node.
type Daemon struct {
	cfg     DaemonConfig
	mu      sync.Mutex
	running map[string]bool
	local   *Local // opened on first restore
}

// NewDaemon returns a daemon; call Close when done.
func NewDaemon(cfg DaemonConfig) *Daemon {
	return &Daemon{cfg: cfg, running: map[string]bool{}}
}

// Close releases the daemon's index.
func (d *Daemon) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.local != nil {
		return d.local.Close()
	}
	return nil
}

func (d *Daemon) logf(format string, a ...any) {
	if d.cfg.Log != nil {
		d.cfg.Log(fmt.Sprintf(format, a...))
	}
}

// Handler returns the daemon's HTTP API.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", d.auth(d.health))
	mux.HandleFunc("POST /v1/backup", d.auth(d.backup))
	mux.HandleFunc("POST /v1/restore", d.auth(d.restore))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return Recover(d.cfg.Log, mux)
}

func (d *Daemon) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !TokenOK(r, d.cfg.Token) {
			WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h(w, r)
	}
}

func (d *Daemon) health(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	var paths []string
	for p := range d.running {
		paths = append(paths, p)
	}
	d.mu.Unlock()
	WriteJSON(w, http.StatusOK, HealthResponse{Node: d.cfg.Node, Paths: paths, Version: d.cfg.Version})
}

func (d *Daemon) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if !ReadJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Path) {
		WriteError(w, http.StatusBadRequest, "path %q is not absolute", req.Path)
		return
	}
	if _, err := os.Lstat(req.Path); err != nil {
		WriteError(w, http.StatusUnprocessableEntity, "cannot back up %s on %s: %v", req.Path, d.cfg.Node, err)
		return
	}
	d.mu.Lock()
	if d.running[req.Path] {
		d.mu.Unlock()
		WriteError(w, http.StatusConflict, "a backup of %s is already running on %s", req.Path, d.cfg.Node)
		return
	}
	d.running[req.Path] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.running, req.Path)
		d.mu.Unlock()
	}()
	d.logf("backup of %s started", req.Path)
	var errs int
	sn, err := BackupRemote(r.Context(), d.cfg.Repo, d.cfg.Coordinator, BackupOptions{
		Node: d.cfg.Node, Path: req.Path, Excludes: d.cfg.Excludes,
		OnError: func(p string, err error) { errs++; d.logf("backup of %s: %s: %v", req.Path, p, err) },
	})
	if err != nil {
		d.logf("backup of %s failed: %v", req.Path, err)
		status := http.StatusInternalServerError
		var ae *APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			status = http.StatusUnprocessableEntity
		}
		WriteError(w, status, "backup of %s on %s: %v", req.Path, d.cfg.Node, err)
		return
	}
	d.logf("backup of %s done: snapshot %s, %d files read, %d bytes added", req.Path, sn.ID.Short(), sn.Summary.FilesNew+sn.Summary.FilesChanged, sn.Summary.StoredAdded)
	WriteJSON(w, http.StatusOK, BackupResponse{ID: string(sn.ID), Summary: sn.Summary})
}

// underRoot reports whether target lies inside one of the restore roots.
func (d *Daemon) underRoot(target string) bool {
	t := filepath.Clean(target)
	for _, root := range d.cfg.RestoreRoots {
		root = filepath.Clean(root)
		if t == root || strings.HasPrefix(t, root+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func (d *Daemon) openLocal(ctx context.Context) (*Local, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.local == nil {
		l, _, err := OpenLocal(ctx, d.cfg.Repo, d.cfg.IndexDir)
		if err != nil {
			return nil, err
		}
		d.local = l
		return l, nil
	}
	if _, err := d.local.Index.Sync(ctx, d.cfg.Repo); err != nil {
		return nil, err
	}
	return d.local, nil
}

func (d *Daemon) restore(w http.ResponseWriter, r *http.Request) {
	var req RestoreRequest
	if !ReadJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Target) || !d.underRoot(req.Target) {
		WriteError(w, http.StatusForbidden, "restore target %q is not under this agent's restore roots %v", req.Target, d.cfg.RestoreRoots)
		return
	}
	l, err := d.openLocal(r.Context())
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "open index: %v", err)
		return
	}
	sn, err := d.cfg.Repo.LoadSnapshot(r.Context(), repo.SnapshotID(req.Snapshot))
	if err != nil {
		WriteError(w, http.StatusNotFound, "snapshot %s: %v", req.Snapshot, err)
		return
	}
	st, err := Restore(r.Context(), l.Repo, l.Index, sn, req.Sub, RestoreOptions{
		Target: req.Target, OnWarning: func(p string, err error) { d.logf("restore: %s: %v", p, err) },
	})
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, repo.ErrNotFound) {
			status = http.StatusNotFound
		}
		WriteError(w, status, "restore on %s: %v", d.cfg.Node, err)
		return
	}
	d.logf("restored snapshot %s to %s", sn.ID.Short(), req.Target)
	WriteJSON(w, http.StatusOK, RestoreResponse{Stats: st})
}
