package clitest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/s3"
)

// storedBytes sums the pack objects in the fleet's bucket.
func (f *fleet) storedBytes() int64 {
	f.t.Helper()
	var loc, key, secret string
	for _, v := range f.env {
		k, val, _ := strings.Cut(v, "=")
		switch k {
		case "CAIRN_REPO":
			loc = val
		case "AWS_ACCESS_KEY_ID":
			key = val
		case "AWS_SECRET_ACCESS_KEY":
			secret = val
		}
	}
	u := strings.TrimPrefix(loc, "s3://")
	host, bucket, _ := strings.Cut(u, "/")
	st, err := s3.New(s3.Config{Endpoint: host, Bucket: bucket, AccessKey: key, SecretKey: secret, Insecure: true})
	if err != nil {
		f.t.Fatal(err)
	}
	var n int64
	if err := st.List(context.Background(), "data/", func(oi repo.ObjectInfo) error { n += oi.Size; return nil }); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// backupNowAndWait runs `backup-now --wait` and returns the new snapshot,
// checking that the command reported the one the coordinator recorded.
func (f *fleet) backupNowAndWait(node string) string {
	f.t.Helper()
	before := f.nodes()[node].Paths[0].LastSnapshot
	out := f.cli("backup-now", "--wait", node)
	p := f.nodes()[node].Paths[0]
	if p.LastSnapshot == "" || p.LastSnapshot == before || p.Running {
		f.t.Fatalf("backup-now --wait returned before a new snapshot of %s: %+v\n%s", node, p, out)
	}
	if !strings.Contains(out, "snapshot "+p.LastSnapshot[:8]) {
		f.t.Fatalf("backup-now --wait did not report snapshot %s:\n%s", p.LastSnapshot[:8], out)
	}
	return p.LastSnapshot
}

func TestFleetCrossNodeDedup(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	a := f.startAgent("alpha", time.Hour, 0)
	b := f.startAgent("beta", time.Hour, 0)
	// The same 200 MiB of files on both nodes.
	for i := range 20 {
		data := make([]byte, 10<<20)
		rand.Read(data)
		for _, dir := range []string{a.src, b.src} {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%02d.bin", i)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.backupNowAndWait("alpha")
	one := f.storedBytes()
	f.backupNowAndWait("beta")
	two := f.storedBytes()
	growth := float64(two-one) / float64(one)
	t.Logf("stored after alpha: %d bytes; after beta: %d (+%.2f%%)", one, two, 100*growth)
	if one < 200<<20 {
		t.Fatalf("alpha stored only %d bytes of 200 MiB", one)
	}
	if growth >= 0.05 {
		t.Errorf("second node grew the store by %.1f%%, want under 5%%", 100*growth)
	}
}

func TestFleetCoordinatorKill9(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	every := 3 * time.Second
	for _, n := range []string{"n1", "n2"} {
		a := f.startAgent(n, every, 20)
		writeStateFile(t, a.src, 1, 4096)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg := f.writers(ctx)
	defer func() { cancel(); wg.Wait() }()
	f.waitFor("three snapshots per node", 60*time.Second, func() bool {
		return len(f.history("n1")) >= 3 && len(f.history("n2")) >= 3
	})
	// Kill while a backup is probably running: wait until one is.
	f.waitFor("a running backup", 30*time.Second, func() bool {
		for _, n := range f.nodes() {
			if n.Paths[0].Running {
				return true
			}
		}
		return false
	})
	acked := map[string]bool{}
	for _, n := range []string{"n1", "n2"} {
		for _, sn := range f.history(n) {
			acked[sn.ID] = true
		}
	}
	f.coord.kill()
	down := time.Now()
	time.Sleep(4 * every) // several runs missed
	f.startCoordinator("--enroll-token", "enroll-secret")
	restarted := time.Now()
	// No acknowledged snapshot is lost.
	after := map[string]bool{}
	for _, n := range []string{"n1", "n2"} {
		for _, sn := range f.history(n) {
			after[sn.ID] = true
		}
	}
	for id := range acked {
		if !after[id] {
			t.Errorf("acknowledged snapshot %s lost by the crash", id[:8])
		}
	}
	// Missed runs run once at the restart (not once per missed interval),
	// then the schedule resumes: within most of an interval, one snapshot.
	time.Sleep(time.Until(restarted.Add(every * 8 / 10)))
	for _, n := range []string{"n1", "n2"} {
		var since []snapInfo
		for _, sn := range f.history(n) {
			if sn.Time.After(down) {
				since = append(since, sn)
			}
		}
		if len(since) != 1 {
			t.Errorf("%s: %d snapshots in the first 0.8 interval after the restart (down %s), want exactly 1",
				n, len(since), restarted.Sub(down).Round(time.Second))
		}
	}
	f.waitFor("the schedule to go on", 30*time.Second, func() bool {
		for _, n := range []string{"n1", "n2"} {
			c := 0
			for _, sn := range f.history(n) {
				if sn.Time.After(down) {
					c++
				}
			}
			if c < 3 {
				return false
			}
		}
		return true
	})
}

func TestFleetAgentKill9MidBackup(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	a := f.startAgent("big", time.Hour, 0)
	// Enough data that a backup takes a while.
	for i := range 30 {
		data := make([]byte, 8<<20)
		rand.Read(data)
		os.WriteFile(filepath.Join(a.src, fmt.Sprintf("f%02d", i)), data, 0o644)
	}
	f.cli("backup-now", "big")
	f.waitFor("the backup to run", 30*time.Second, func() bool { return f.nodes()["big"].Paths[0].Running })
	time.Sleep(700 * time.Millisecond)
	a.kill()
	time.Sleep(time.Second)
	if h := f.history("big"); len(h) != 0 {
		t.Fatalf("a killed backup left %d visible snapshots", len(h))
	}
	// With the agent gone, waiting on a backup reports its failure.
	if out, err := f.cliErr("backup-now", "--wait", "big"); err == nil || !strings.Contains(out, "failed") {
		t.Fatalf("backup-now --wait on a dead agent: %v\n%s", err, out)
	}
	f.startAgent("big", time.Hour, 0)
	f.waitFor("the coordinator to see big up again", 30*time.Second, func() bool { return f.nodes()["big"].Up })
	id := f.backupNowAndWait("big")
	// The node's return may also have run its path by itself.
	h := f.history("big")
	if len(h) < 1 || len(h) > 2 || h[0].ID != id {
		t.Fatalf("after the agent's return: %+v", h)
	}
	// Asked again while a run is going, it runs once more after it (it
	// used to be dropped), and --wait waits for that second run.
	f.cli("backup-now", "big")
	f.waitFor("the backup to run", 30*time.Second, func() bool { return f.nodes()["big"].Paths[0].Running })
	second := f.backupNowAndWait("big")
	if h2 := f.history("big"); len(h2) != len(h)+2 || h2[0].ID != second {
		t.Fatalf("backup-now during a run: history %+v, want %d snapshots, newest %s", h2, len(h)+2, second)
	}
	dst := filepath.Join(t.TempDir(), "x.tar.gz")
	f.cli("restore", "big:"+a.src+"@latest", "--tar", dst)
	files := tarFiles(t, dst)
	if len(files) != 30 {
		t.Errorf("restored %d files, want 30", len(files))
	}
	if c := f.cli("check", "--read-data"); !strings.Contains(c, "no problems found") {
		t.Errorf("check:\n%s", c)
	}
}

func TestFleetNodeDownAndUp(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	a := f.startAgent("flaky", time.Second, 0)
	writeStateFile(t, a.src, 1, 1024)
	f.waitFor("a first backup", 30*time.Second, func() bool { return len(f.history("flaky")) > 0 })
	a.kill()
	killed := time.Now()
	f.waitFor("the node marked down", 10*time.Second, func() bool { return !f.nodes()["flaky"].Up })
	if d := time.Since(killed); d > 3*time.Second+500*time.Millisecond {
		t.Errorf("marked down after %s, want within three 1s intervals", d)
	}
	if !strings.Contains(f.metrics(), `cairn_nodes{state="down"} 1`) {
		t.Errorf("metrics do not count the node down")
	}
	f.startAgent("flaky", time.Second, 0)
	back := time.Now()
	f.waitFor("the node marked up", 15*time.Second, func() bool { return f.nodes()["flaky"].Up })
	n := len(f.history("flaky"))
	f.waitFor("backups to resume", 15*time.Second, func() bool { return len(f.history("flaky")) > n })
	t.Logf("down after %s, up %s after its return", time.Since(killed).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
}

func TestFleetAuthAndBadRequests(t *testing.T) {
	f := newFleet(t)
	f.startCoordinator("--enroll-token", "enroll-secret")
	a := f.startAgent("one", time.Hour, 0)
	b := f.startAgent("two", time.Hour, 0)
	cases := []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"no token", "GET", "/v1/nodes", "", nil, 401},
		{"wrong token", "GET", "/v1/nodes", "nope", nil, 401},
		{"agent token on an admin call", "GET", "/v1/nodes", a.token, nil, 403},
		{"enroll token on an admin call", "GET", "/v1/snapshots", "enroll-secret", nil, 403},
		{"agent acting for another node", "POST", "/v1/sessions", a.token, map[string]string{"node": "two", "path": b.src}, 403},
		{"agent re-registering another node", "POST", "/v1/nodes", a.token, map[string]any{"name": "two", "addr": "1.2.3.4:5"}, 403},
		{"enroll token taking over a node", "POST", "/v1/nodes", "enroll-secret", map[string]any{"name": "two", "addr": "1.2.3.4:5"}, 403},
		{"malformed JSON", "POST", "/v1/nodes", f.admin, "{not json", 400},
		{"unknown field", "POST", "/v1/nodes", f.admin, map[string]any{"name": "x", "bogus": 1}, 400},
		{"bad node name", "POST", "/v1/nodes", f.admin, map[string]any{"name": "../x", "addr": "h:1"}, 400},
		{"relative path", "POST", "/v1/nodes", f.admin, map[string]any{"name": "x", "addr": "h:1", "paths": []map[string]any{{"path": "rel", "every": "1h"}}}, 400},
		{"bad interval", "POST", "/v1/nodes", f.admin, map[string]any{"name": "x", "addr": "h:1", "paths": []map[string]any{{"path": "/x", "every": "soon"}}}, 400},
		{"unknown session", "POST", "/v1/sessions/abc/lookup", a.token, map[string]any{"blobs": []any{}}, 410},
		{"bad selector", "GET", "/v1/restore?snapshot=zz", f.admin, nil, 400},
		{"missing snapshot", "GET", "/v1/restore?snapshot=one:/x@latest", f.admin, nil, 404},
		{"unknown endpoint", "GET", "/v2/whatever", f.admin, nil, 404},
	}
	for _, c := range cases {
		var resp map[string]any
		got := f.api(c.method, c.path, c.token, c.body, &resp)
		if got != c.want {
			t.Errorf("%s: status %d, want %d (%v)", c.name, got, c.want, resp)
		}
		if got >= 400 && (resp == nil || resp["error"] == "") {
			t.Errorf("%s: no JSON error message", c.name)
		}
	}
	// A session of node one cannot be used by node two's token.
	var sess struct{ ID string }
	if st := f.api("POST", "/v1/sessions", a.token, map[string]string{"node": "one", "path": a.src}, &sess); st != 200 {
		t.Fatalf("open session: %d", st)
	}
	if st := f.api("POST", "/v1/sessions/"+sess.ID+"/lookup", b.token, map[string]any{"blobs": []any{}}, nil); st != 403 {
		t.Errorf("lookup in another node's session: %d, want 403", st)
	}
	// The agent refuses the wrong token too, and restores only under its roots.
	if st, _ := agentCall(a.addr, "nope", "GET", "/v1/health", ""); st != 401 {
		t.Errorf("agent with a wrong token: %d", st)
	}
	if st, body := agentCall(a.addr, a.token, "POST", "/v1/restore", `{"snapshot":"x","target":"/etc"}`); st != 403 || !strings.Contains(body, "restore roots") {
		t.Errorf("restore outside the roots: %d %s", st, body)
	}
	if st, _ := agentCall(a.addr, a.token, "POST", "/v1/backup", `{"path":`); st != 400 {
		t.Errorf("malformed backup request: %d", st)
	}
	// Both daemons are still serving.
	if f.api("GET", "/v1/nodes", f.admin, nil, nil) != 200 {
		t.Error("coordinator stopped answering")
	}
	if st, _ := agentCall(a.addr, a.token, "GET", "/v1/health", ""); st != 200 {
		t.Error("agent stopped answering")
	}
}
