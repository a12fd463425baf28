package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Fleet is cairn in fleet mode on one machine: a coordinator and one agent
// (node "bench") as daemons, driven through the admin commands. Backups are
// `backup-now --wait`, restores run on the node; the measures include the
// daemons' CPU time and each process's peak RSS.
type Fleet struct {
	Bin string
	// RestoreDir is where restores may go besides the scratch folder.
	RestoreDir string

	coord, agent *exec.Cmd
	url, token   string
	restoreRoot  string
	logs         []*os.File
}

func (f *Fleet) Name() string   { return "cairn-fleet" }
func (f *Fleet) Binary() string { return f.Bin }

func (f *Fleet) Prepare(dir, src string, loc Location) ([]string, error) {
	env, err := Cairn{Bin: f.Bin}.Prepare(dir, src, loc)
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	aport, err := freePort()
	if err != nil {
		return nil, err
	}
	f.url, f.token = "http://"+cport, "bench-admin"
	f.restoreRoot = dir
	if f.coord, err = f.daemon(dir, "coordinator", env, "coordinator", "--listen", cport,
		"--admin-token", f.token, "--enroll-token", "bench-enroll"); err != nil {
		return nil, err
	}
	if err := waitHTTP(f.url + "/v1/nodes"); err != nil {
		f.Close()
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	if f.agent, err = f.daemon(dir, "agent", env, "agent", "--node", "bench", "--listen", aport, "--advertise", aport,
		"--coordinator", f.url, "--enroll-token", "bench-enroll", "--register", src, "--every", "24h",
		"--restore-root", dir, "--restore-root", cmp.Or(f.RestoreDir, dir)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.waitNode(); err != nil {
		f.Close()
		return nil, err
	}
	return append(env, "CAIRN_COORDINATOR="+f.url, "CAIRN_TOKEN="+f.token), nil
}

// daemon starts cairn args with env, its output in a log under dir.
func (f *Fleet) daemon(dir, name string, env []string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	f.logs = append(f.logs, log)
	cmd := command(f.Bin, append(env, "CAIRN_STATE_DIR="+filepath.Join(dir, name+"-state")), args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, nil
}

// waitNode waits until the agent has registered its path.
func (f *Fleet) waitNode() error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, f.url+"/v1/nodes", nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var nodes []struct {
				Name  string            `json:"name"`
				Paths []json.RawMessage `json:"paths"`
			}
			// A body that does not decode is a coordinator not ready yet.
			_ = json.NewDecoder(resp.Body).Decode(&nodes)
			resp.Body.Close()
			for _, n := range nodes {
				if n.Name == "bench" && len(n.Paths) > 0 {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the agent did not register within 30s")
}

func (f *Fleet) Daemons() []Daemon {
	return []Daemon{{Name: "coordinator", Pid: f.coord.Process.Pid}, {Name: "agent", Pid: f.agent.Process.Pid}}
}

func (f *Fleet) Close() error {
	for _, c := range []*exec.Cmd{f.agent, f.coord} {
		if c != nil && c.Process != nil {
			c.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				c.Process.Kill()
				<-done
			}
		}
	}
	for _, l := range f.logs {
		l.Close()
	}
	f.agent, f.coord, f.logs = nil, nil, nil
	return nil
}

func (f *Fleet) Backup(src string) []string {
	return []string{"backup-now", "--wait", "bench:" + src}
}
func (f *Fleet) Restore(src, dst string) []string {
	return []string{"restore", "-q", "bench:" + src + "@latest", "--on-node", "--target", dst}
}
func (f *Fleet) RestoreFile(src, rel, dst string) []string {
	return []string{"restore", "-q", "bench:" + src + "@latest:/" + rel, "--on-node", "--target", dst}
}

// ForgetOldest forgets through the repository (not measured); the
// coordinator's collection finds out by its own sync.
func (f *Fleet) ForgetOldest(n int) [][]string {
	return [][]string{{"forget", "-q", "--coordinator", "", "--keep-last", fmt.Sprint(n - 1), "--no-gc"}}
}
func (f *Fleet) GC() []string { return []string{"gc", "-q"} }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP waits until url answers at all.
func waitHTTP(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if !strings.Contains(err.Error(), "connection refused") {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 30s", url)
}
