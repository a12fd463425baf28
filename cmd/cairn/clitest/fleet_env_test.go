package clitest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo/storetest"
)

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// fleet is MinIO (from make test), a coordinator and agents, all real
// processes on loopback.
type fleet struct {
	t        *testing.T
	base     string
	env      []string // repository and password, shared by all
	admin    string
	coordURL string
	coordDir string
	coord    *proc
	agents   map[string]*agentProc
}

type agentProc struct {
	*proc
	node, addr, src, state, token string
}

func newFleet(t *testing.T) *fleet {
	cfg := storetest.MinIOConfig(t)
	base := t.TempDir()
	f := &fleet{
		t: t, base: base, admin: "admin-secret", agents: map[string]*agentProc{},
		env: []string{
			"HOME=" + base, "PATH=" + os.Getenv("PATH"),
			"CAIRN_REPO=s3://" + cfg.Endpoint + "/" + cfg.Bucket, "CAIRN_S3_HTTP=1",
			"AWS_ACCESS_KEY_ID=" + cfg.AccessKey, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretKey,
			"CAIRN_PASSWORD=fleet-password",
		},
	}
	f.coordDir = filepath.Join(base, "coordinator")
	f.cli("init", "-q")
	f.coordURL = "http://" + freePort(t)
	return f
}

func (f *fleet) start(name string, extraEnv []string, args ...string) *proc {
	f.t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(cairnBin, args...)
	p.cmd.Env = append(append([]string{}, f.env...), extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	f.t.Cleanup(func() {
		p.kill()
		if f.t.Failed() || os.Getenv("CAIRN_TEST_LOGS") != "" {
			f.t.Logf("--- output of %s ---\n%s", name, tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (f *fleet) startCoordinator(extra ...string) {
	f.t.Helper()
	addr := strings.TrimPrefix(f.coordURL, "http://")
	args := append([]string{"coordinator", "--listen", addr, "--admin-token", f.admin, "--state-dir", f.coordDir, "--lease", "5s"}, extra...)
	f.coord = f.start("coordinator", nil, args...)
	f.waitFor("coordinator up", 20*time.Second, func() bool {
		return f.api("GET", "/v1/nodes", f.admin, nil, nil) == 200
	})
}

// startAgent starts (or restarts) the agent of node, registering its
// source folder with the given interval on first start.
func (f *fleet) startAgent(node string, every time.Duration, keep int) *agentProc {
	f.t.Helper()
	a := f.agents[node]
	if a == nil {
		a = &agentProc{node: node, addr: freePort(f.t), src: filepath.Join(f.base, "src-"+node), state: filepath.Join(f.base, "state-"+node)}
		os.MkdirAll(a.src, 0o755)
		f.agents[node] = a
	}
	args := []string{"agent", "--node", node, "--listen", a.addr, "--coordinator", f.coordURL, "--state-dir", a.state,
		"--restore-root", filepath.Join(f.base, "restores")}
	if a.token == "" {
		args = append(args, "--enroll-token", "enroll-secret", "--register", a.src, "--every", every.String(), "--advertise", a.addr)
		if keep > 0 {
			args = append(args, "--keep", fmt.Sprint(keep))
		}
	} else {
		args = append(args, "--token", a.token)
	}
	a.proc = f.start("agent "+node, nil, args...)
	if a.token == "" {
		f.waitFor("agent "+node+" registered", 30*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(a.state, "", mustGlob(a.state, "*/agent-"+node+"/token")))
			if err != nil {
				return false
			}
			a.token = strings.TrimSpace(string(b))
			return a.token != ""
		})
	}
	return a
}

func mustGlob(dir, pattern string) string {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		return "nonexistent"
	}
	rel, _ := filepath.Rel(dir, m[0])
	return rel
}

// cli runs a cairn command against the repository (embedded mode, its own
// state folder) or, with --coordinator in args, against the coordinator.
func (f *fleet) cli(args ...string) string {
	f.t.Helper()
	out, err := f.cliErr(args...)
	if err != nil {
		f.t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliErr runs the CLI and returns its output and exit error.
func (f *fleet) cliErr(args ...string) (string, error) {
	f.t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(append([]string{}, f.env...), "CAIRN_STATE_DIR="+filepath.Join(f.base, "cli-state"),
		"CAIRN_COORDINATOR="+f.coordURL, "CAIRN_TOKEN="+f.admin)
	if args[0] == "init" || args[0] == "check" || args[0] == "stats" || args[0] == "snapshots" || args[0] == "index" {
		cmd.Env = append(cmd.Env, "CAIRN_COORDINATOR=")
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// api calls the coordinator and returns the status code.
func (f *fleet) api(method, path, token string, in, out any) int {
	var body io.Reader
	if in != nil {
		if s, ok := in.(string); ok {
			body = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(in)
			body = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequest(method, f.coordURL+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

func (f *fleet) waitFor(what string, limit time.Duration, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type nodeStatus struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Paths []struct {
		Path         string    `json:"path"`
		LastSuccess  time.Time `json:"last_success"`
		LastSnapshot string    `json:"last_snapshot"`
		LastError    string    `json:"last_error"`
		Running      bool      `json:"running"`
	} `json:"paths"`
}

func (f *fleet) nodes() map[string]nodeStatus {
	var ns []nodeStatus
	f.api("GET", "/v1/nodes", f.admin, nil, &ns)
	out := map[string]nodeStatus{}
	for _, n := range ns {
		out[n.Name] = n
	}
	return out
}

type snapInfo struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Path string    `json:"path"`
}

func (f *fleet) history(node string) []snapInfo {
	var sns []snapInfo
	f.api("GET", "/v1/snapshots?node="+node, f.admin, nil, &sns)
	return sns
}

// stateFile writes version v of a self-describing file atomically: 8
// bytes of v, then bytes derived from v. Any copy of it can be checked
// against its own version.
func writeStateFile(t *testing.T, dir string, v uint64, size int) {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, v)
	rnd := rand.New(rand.NewPCG(v, 99))
	for i := 8; i < size; i++ {
		b[i] = byte(rnd.Uint32())
	}
	tmp := filepath.Join(dir, ".state.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.bin")); err != nil {
		t.Error(err)
	}
}

// checkStateFile returns the version of a restored state file, failing if
// its body does not match the version.
func checkStateFile(t *testing.T, b []byte) uint64 {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("state file of %d bytes", len(b))
	}
	v := binary.LittleEndian.Uint64(b)
	want := make([]byte, len(b))
	binary.LittleEndian.PutUint64(want, v)
	rnd := rand.New(rand.NewPCG(v, 99))
	for i := 8; i < len(want); i++ {
		want[i] = byte(rnd.Uint32())
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("restored state file claims version %d but its body is not that version's", v)
	}
	return v
}

// writers change every agent's source until stop is closed: the state file
// gets a new version every 200 ms.
func (f *fleet) writers(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, a := range f.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := uint64(1); ctx.Err() == nil; v++ {
				writeStateFile(f.t, a.src, v, 64<<10)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	return &wg
}

func httpGet(url, token string) (string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func agentCall(addr, token, method, path, body string) (int, string) {
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
