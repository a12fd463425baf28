package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/scheduler"
)

// adminFlags reach the coordinator.
type adminFlags struct {
	url   string
	token string
	ca    string
}

func (a *adminFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.url, "coordinator", os.Getenv("CAIRN_COORDINATOR"), "coordinator URL (env CAIRN_COORDINATOR)")
	f.StringVar(&a.token, "token", os.Getenv("CAIRN_TOKEN"), "admin token (env CAIRN_TOKEN)")
	f.StringVar(&a.ca, "ca-file", os.Getenv("CAIRN_CA_FILE"), "trust this CA (PEM) for the coordinator's certificate")
}

func (a *adminFlags) client(timeout time.Duration) (*agent.Client, error) {
	if a.url == "" {
		return nil, usageError{"no coordinator: --coordinator URL or CAIRN_COORDINATOR"}
	}
	if a.token == "" {
		return nil, usageError{"no admin token: --token or CAIRN_TOKEN"}
	}
	return agent.NewClient(a.url, a.token, a.ca, timeout)
}

func newNodeCmd(a *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage the coordinator's nodes"}
	var addr string
	var paths []string
	var every time.Duration
	var keep int
	reg := &cobra.Command{
		Use:   "register NAME --addr HOST:PORT --path P --every DURATION [--keep N]",
		Short: "Register a node and paths to back up on it; prints the node's agent token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(paths) == 0 {
				return usageError{"give at least one --path"}
			}
			cl, err := a.client(30 * time.Second)
			if err != nil {
				return err
			}
			req := scheduler.RegisterRequest{Name: args[0], Addr: addr}
			for _, p := range paths {
				req.Paths = append(req.Paths, scheduler.PathSpec{Path: p, Every: scheduler.Duration(every), Keep: keep})
			}
			var resp scheduler.RegisterResponse
			if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/nodes", req, &resp); err != nil {
				return err
			}
			fmt.Printf("registered %s: %s every %s\n", resp.Name, strings.Join(paths, ", "), every)
			fmt.Printf("agent token (start the agent with CAIRN_AGENT_TOKEN=...): %s\n", resp.Token)
			return nil
		},
	}
	reg.Flags().StringVar(&addr, "addr", "", "HOST:PORT of the node's agent")
	reg.Flags().StringArrayVar(&paths, "path", nil, "absolute path to back up (repeatable)")
	reg.Flags().DurationVar(&every, "every", time.Hour, "backup interval")
	reg.Flags().IntVar(&keep, "keep", 0, "snapshots to keep (default: the coordinator's, 10)")

	var unPath string
	unreg := &cobra.Command{
		Use:   "unregister NAME [--path P]",
		Short: "Stop backing up a node (or one of its paths); its snapshots stay",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client(30 * time.Second)
			if err != nil {
				return err
			}
			p := "/v1/nodes/" + url.PathEscape(args[0])
			if unPath != "" {
				p += "?path=" + url.QueryEscape(unPath)
			}
			if err := cl.Do(cmd.Context(), http.MethodDelete, p, nil, nil); err != nil {
				return err
			}
			fmt.Printf("unregistered %s%s\n", args[0], map[bool]string{true: ":" + unPath}[unPath != ""])
			return nil
		},
	}
	unreg.Flags().StringVar(&unPath, "path", "", "only this path")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List nodes: status, last backup, next run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client(30 * time.Second)
			if err != nil {
				return err
			}
			var nodes []scheduler.NodeStatus
			if err := cl.Do(cmd.Context(), http.MethodGet, "/v1/nodes", nil, &nodes); err != nil {
				return err
			}
			w := stdoutWriter()
			defer w.Flush()
			if asJSON {
				return writeJSON(w, nodes)
			}
			fmt.Fprintf(w, "%-12s %-5s %-22s %-24s %-8s %-19s %-19s %s\n", "NODE", "STATE", "ADDR", "PATH", "EVERY", "LAST SUCCESS", "NEXT RUN", "LAST ERROR")
			for _, n := range nodes {
				state := "up"
				if !n.Up {
					state = "down"
				}
				for _, p := range n.Paths {
					last := "never"
					if !p.LastSuccess.IsZero() {
						last = p.LastSuccess.Local().Format("2006-01-02 15:04:05")
					}
					next := p.NextRun.Local().Format("2006-01-02 15:04:05")
					if p.Running {
						next = "running"
					}
					fmt.Fprintf(w, "%-12s %-5s %-22s %-24s %-8s %-19s %-19s %s\n", n.Name, state, n.Addr, p.Path,
						time.Duration(p.Every), last, next, p.LastError)
				}
				if len(n.Paths) == 0 {
					fmt.Fprintf(w, "%-12s %-5s %-22s (no paths)\n", n.Name, state, n.Addr)
				}
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(reg, unreg, list)
	return cmd
}

func newHistoryCmd(a *adminFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history NAME[:PATH]",
		Short: "Snapshots of a node (or one path) at the coordinator, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client(time.Minute)
			if err != nil {
				return err
			}
			node, path, _ := strings.Cut(args[0], ":")
			q := url.Values{"node": {node}}
			if path != "" {
				q.Set("path", path)
			}
			var sns []scheduler.SnapshotInfo
			if err := cl.Do(cmd.Context(), http.MethodGet, "/v1/snapshots?"+q.Encode(), nil, &sns); err != nil {
				return err
			}
			w := stdoutWriter()
			defer w.Flush()
			if asJSON {
				return writeJSON(w, sns)
			}
			fmt.Fprintf(w, "%-3s %-8s  %-19s  %-24s  %9s  %10s  %10s\n", "N", "ID", "TIME", "PATH", "FILES", "SIZE", "ADDED")
			n := map[string]int{}
			for _, sn := range sns {
				n[sn.Path]++
				s := sn.Summary
				fmt.Fprintf(w, "@%-2d %-8s  %-19s  %-24s  %9d  %10s  %10s\n", n[sn.Path], sn.ID[:8], sn.Time.Local().Format("2006-01-02 15:04:05"),
					sn.Path, s.FilesNew+s.FilesChanged+s.FilesUnchanged, humanBytes(s.TotalSize), humanBytes(s.StoredAdded))
			}
			fmt.Fprintf(w, "%d snapshots\n", len(sns))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newBackupNowCmd(a *adminFlags) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "backup-now NAME[:PATH]",
		Short: "Run a node's backups (or one path's) now",
		Long: `Queue a backup of every path of node NAME (or of PATH only). With --wait,
wait for each queued path's run to end and fail if any failed, like a
scheduler's "run and wait".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client(30 * time.Second)
			if err != nil {
				return err
			}
			node, path, _ := strings.Cut(args[0], ":")
			var resp scheduler.BackupNowResponse
			if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/backups", scheduler.BackupNowRequest{Node: node, Path: path}, &resp); err != nil {
				return err
			}
			fmt.Printf("queued %s\n", strings.Join(resp.Queued, ", "))
			if !wait {
				return nil
			}
			return waitForRuns(cmd.Context(), cl, resp)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the queued backups to end; exit non-zero if one failed")
	return cmd
}

// waitForRuns waits until each queued path has finished a run that
// started at or after the request (by the coordinator's clock, the only
// one compared), then reports each outcome. The coordinator holds each
// status request until another run has ended (GET /v1/runs), so the end
// of a run is seen as it happens, without polling.
func waitForRuns(ctx context.Context, cl *agent.Client, q scheduler.BackupNowResponse) error {
	pending := map[string]bool{}
	for _, p := range q.Queued {
		pending[p] = true
	}
	var failed []string
	query := "/v1/runs" // the first answer is at once
	for len(pending) > 0 {
		var st scheduler.RunsStatus
		if err := cl.Do(ctx, http.MethodGet, query, nil, &st); err != nil {
			return err
		}
		query = fmt.Sprintf("/v1/runs?after=%d&wait=%s", st.Seq, runsWait)
		now := map[string]scheduler.PathStatus{}
		for _, n := range st.Nodes {
			for _, p := range n.Paths {
				now[n.Name+":"+p.Path] = p
			}
		}
		for p := range pending {
			st, ok := now[p]
			if !ok {
				return fmt.Errorf("%s was unregistered while waiting", p)
			}
			if st.LastRun.Before(q.At) {
				continue
			}
			delete(pending, p)
			if st.LastSuccess.Before(st.LastRun) {
				fmt.Printf("%s: failed: %s\n", p, st.LastError)
				failed = append(failed, p)
			} else {
				fmt.Printf("%s: snapshot %s\n", p, shortID(st.LastSnapshot))
			}
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("backup failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runsWait is how long one status request may wait at the coordinator;
// below the client's 30-second timeout.
const runsWait = 20 * time.Second

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// restoreViaCoordinator streams a tar from the coordinator into path, or
// asks the snapshot's node to restore in place.
func restoreViaCoordinator(ctx context.Context, a *adminFlags, sel, tarPath, target string, onNode bool) error {
	cl, err := a.client(0)
	if err != nil {
		return err
	}
	if onNode {
		if target == "" {
			return usageError{"--on-node needs --target DIR (a path on the node, under its --restore-root)"}
		}
		var resp agent.RestoreResponse
		if err := cl.Do(ctx, http.MethodPost, "/v1/restore-on-node", scheduler.RestoreOnNodeRequest{Snapshot: sel, Target: target}, &resp); err != nil {
			return err
		}
		fmt.Printf("restored on the node into %s: %d files (%s), %d dirs\n", target, resp.Stats.Files, humanBytes(resp.Stats.Bytes), resp.Stats.Dirs)
		return nil
	}
	if tarPath == "" {
		return usageError{"through the coordinator, give --tar FILE (or --on-node --target DIR)"}
	}
	format := "tar"
	switch {
	case strings.HasSuffix(tarPath, ".gz") || strings.HasSuffix(tarPath, ".tgz"):
		format = "gzip"
	case strings.HasSuffix(tarPath, ".zst"):
		format = "zstd"
	}
	resp, err := cl.Raw(ctx, http.MethodGet, "/v1/restore?"+url.Values{"snapshot": {sel}, "format": {format}}.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out io.Writer = os.Stdout
	var file *os.File
	if tarPath != "-" {
		file, err = os.CreateTemp(filepath.Dir(tarPath), ".cairn-tar-*")
		if err != nil {
			return err
		}
		defer func() {
			if file != nil {
				file.Close()
				os.Remove(file.Name())
			}
		}()
		out = file
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	n, err := io.Copy(bw, resp.Body)
	if err != nil {
		return fmt.Errorf("restore stream cut after %d bytes: %w", n, err)
	}
	if msg := resp.Trailer.Get("X-Cairn-Error"); msg != "" {
		return errors.New("coordinator: " + msg)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return err
		}
		if err := os.Rename(file.Name(), tarPath); err != nil {
			return err
		}
		file = nil
		fmt.Fprintf(os.Stderr, "wrote snapshot %s to %s (%s)\n", resp.Header.Get("X-Cairn-Snapshot")[:8], tarPath, humanBytes(uint64(n)))
	}
	return nil
}
