package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/scheduler"
)

// serve runs h on addr (TLS when cert and key are given) until ctx ends.
func serve(ctx context.Context, addr, cert, key string, h http.Handler, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if cert != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() {
		if cert != "" {
			errc <- srv.ServeTLS(ln, cert, key)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

func logLine(prefix string) func(string) {
	return func(s string) {
		fmt.Fprintf(os.Stderr, "%s %s %s\n", time.Now().Format("2006-01-02T15:04:05.000"), prefix, s)
	}
}

func newCoordinatorCmd(g *globals) *cobra.Command {
	var listen, adminToken, enrollToken, cert, key, agentCA string
	var lease, gcEvery time.Duration
	var workers, keep int
	var agentTLS bool
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run the fleet coordinator: schedules backups of registered nodes, keeps the catalog, collects garbage, serves restores",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if adminToken == "" {
				return usageError{"an admin token is required: --admin-token or CAIRN_ADMIN_TOKEN"}
			}
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			stateDir := g.stateDir
			if stateDir == "" {
				d, err := g.indexDir("x")
				if err != nil {
					return err
				}
				stateDir = filepath.Dir(filepath.Dir(d))
			}
			scheme := "http"
			if agentTLS {
				scheme = "https"
			}
			log := logLine("coordinator:")
			c, err := scheduler.Open(ctx, scheduler.Config{
				Repo: r, StateDir: stateDir, AdminToken: adminToken, EnrollToken: enrollToken,
				Lease: lease, Workers: workers, GCEvery: gcEvery, DefaultKeep: keep,
				AgentScheme: scheme, AgentCAFile: agentCA, Log: log, Version: version,
			})
			if err != nil {
				return err
			}
			defer c.Close()
			c.Start()
			return serve(ctx, listen, cert, key, c.Handler(), func(a net.Addr) {
				log(fmt.Sprintf("listening on %s for repository %s (%s)", a, r.Config().ID[:8], r.Location()))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", envOr("CAIRN_LISTEN", ":7000"), "address to serve the API on (env CAIRN_LISTEN)")
	f.StringVar(&adminToken, "admin-token", os.Getenv("CAIRN_ADMIN_TOKEN"), "token of admin calls (env CAIRN_ADMIN_TOKEN)")
	f.StringVar(&enrollToken, "enroll-token", os.Getenv("CAIRN_ENROLL_TOKEN"), "token with which agents may register themselves as new nodes (env CAIRN_ENROLL_TOKEN)")
	f.StringVar(&cert, "tls-cert", os.Getenv("CAIRN_TLS_CERT"), "serve HTTPS with this certificate (PEM)")
	f.StringVar(&key, "tls-key", os.Getenv("CAIRN_TLS_KEY"), "... and this key")
	f.BoolVar(&agentTLS, "agent-tls", os.Getenv("CAIRN_AGENT_TLS") == "1", "call agents over HTTPS")
	f.StringVar(&agentCA, "agent-ca", os.Getenv("CAIRN_AGENT_CA"), "trust this CA (PEM) for agents' certificates")
	f.DurationVar(&lease, "lease", 60*time.Second, "backup session lease")
	f.DurationVar(&gcEvery, "gc-every", 0, "collect garbage on this interval (0: only on demand)")
	f.IntVar(&workers, "workers", 4, "backups run at once")
	f.IntVar(&keep, "keep", 0, "snapshots kept per node and path unless registered otherwise (default: the repository's)")
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newAgentCmd(g *globals) *cobra.Command {
	var listen, advertise, coordinator, token, enrollToken, cert, key, ca string
	var register, restoreRoots, excludes []string
	var every time.Duration
	var keep int
	host, _ := os.Hostname()
	node := host
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent of this node: backs up and restores on the coordinator's request",
		Long: `Run the agent daemon of this node. It uploads packs straight to the
repository and asks the coordinator which chunks exist, so nodes deduplicate
against each other. It needs the repository (-r and its password) and the
coordinator's address.

With --register PATH (repeatable) --every D it registers itself and its
paths at start-up, using its node token if it has one (kept in its state
folder after the first registration) or the coordinator's enrollment token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if coordinator == "" {
				return usageError{"no coordinator: --coordinator URL or CAIRN_COORDINATOR"}
			}
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			idx, err := g.indexDir(r.Config().ID)
			if err != nil {
				return err
			}
			agentDir := filepath.Join(filepath.Dir(idx), "agent-"+node)
			tokenFile := filepath.Join(agentDir, "token")
			if token == "" {
				if b, err := os.ReadFile(tokenFile); err == nil {
					token = strings.TrimSpace(string(b))
				}
			}
			log := logLine("agent " + node + ":")
			if len(register) > 0 {
				if advertise == "" {
					return usageError{"--register needs --advertise HOST:PORT, the address the coordinator calls"}
				}
				tok, err := registerSelf(ctx, coordinator, ca, token, enrollToken, node, advertise, register, every, keep)
				if err != nil {
					return err
				}
				if tok != token {
					if err := os.MkdirAll(agentDir, 0o700); err != nil {
						return err
					}
					if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
						return fmt.Errorf("save node token: %w", err)
					}
				}
				token = tok
				log(fmt.Sprintf("registered %v every %s with the coordinator", register, every))
			}
			if token == "" {
				return usageError{"no node token: --token (env CAIRN_AGENT_TOKEN), or --register with an enrollment token"}
			}
			cl, err := agent.NewClient(coordinator, token, ca, 5*time.Minute)
			if err != nil {
				return err
			}
			d := agent.NewDaemon(agent.DaemonConfig{
				Node: node, Token: token, Coordinator: cl, Repo: r, IndexDir: filepath.Join(agentDir, "index"),
				RestoreRoots: restoreRoots, Excludes: excludes, Version: version, Log: log,
			})
			defer d.Close()
			return serve(ctx, listen, cert, key, d.Handler(), func(a net.Addr) {
				log(fmt.Sprintf("listening on %s; coordinator %s", a, coordinator))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", envOr("CAIRN_NODE", host), "this node's name (env CAIRN_NODE)")
	f.StringVar(&listen, "listen", envOr("CAIRN_LISTEN", ":7070"), "address to serve the agent API on")
	f.StringVar(&advertise, "advertise", os.Getenv("CAIRN_ADVERTISE"), "HOST:PORT the coordinator reaches this agent at (for --register)")
	f.StringVar(&coordinator, "coordinator", os.Getenv("CAIRN_COORDINATOR"), "coordinator URL (env CAIRN_COORDINATOR)")
	f.StringVar(&token, "token", os.Getenv("CAIRN_AGENT_TOKEN"), "this node's token, from `cairn node register` (env CAIRN_AGENT_TOKEN)")
	f.StringVar(&enrollToken, "enroll-token", os.Getenv("CAIRN_ENROLL_TOKEN"), "coordinator enrollment token for self-registration")
	f.StringArrayVar(&register, "register", nil, "register this path at start-up (repeatable)")
	f.DurationVar(&every, "every", time.Hour, "interval of registered paths")
	f.IntVar(&keep, "keep", 0, "snapshots kept of registered paths (default: the coordinator's)")
	f.StringArrayVar(&restoreRoots, "restore-root", nil, "folder under which restores in place are allowed (repeatable)")
	f.StringArrayVar(&excludes, "exclude", nil, "leave out names matching this pattern (repeatable)")
	f.StringVar(&cert, "tls-cert", os.Getenv("CAIRN_TLS_CERT"), "serve HTTPS with this certificate")
	f.StringVar(&key, "tls-key", os.Getenv("CAIRN_TLS_KEY"), "... and this key")
	f.StringVar(&ca, "ca-file", os.Getenv("CAIRN_CA_FILE"), "trust this CA (PEM) for the coordinator's certificate")
	return cmd
}

func registerSelf(ctx context.Context, coordinator, ca, token, enroll, node, addr string, paths []string, every time.Duration, keep int) (string, error) {
	req := scheduler.RegisterRequest{Name: node, Addr: addr}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		req.Paths = append(req.Paths, scheduler.PathSpec{Path: abs, Every: scheduler.Duration(every), Keep: keep})
	}
	var lastErr error
	for _, tok := range []string{token, enroll} {
		if tok == "" {
			continue
		}
		cl, err := agent.NewClient(coordinator, tok, ca, 30*time.Second)
		if err != nil {
			return "", err
		}
		var resp scheduler.RegisterResponse
		// The coordinator may still be starting: retry for a while.
		for attempt := 0; ; attempt++ {
			lastErr = cl.Do(ctx, http.MethodPost, "/v1/nodes", req, &resp)
			if lastErr == nil {
				return resp.Token, nil
			}
			if !errors.Is(lastErr, agent.ErrUnreachable) || attempt == 30 {
				break
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no token to register with: give --token or --enroll-token")
	}
	return "", fmt.Errorf("register with %s: %w", coordinator, lastErr)
}
