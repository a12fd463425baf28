package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Scenario names, in the order they run.
const (
	ScInitial     = "initial backup"
	ScNoChange    = "no-change backup"
	ScNext        = "next-version backup"
	ScRestore     = "full restore"
	ScRestoreFile = "single-file restore"
	ScGC          = "gc after forgetting one"
	ScDedup       = "10 versions (stored bytes)"
)

// Scenarios lists every scenario in report order.
var Scenarios = []string{ScInitial, ScNoChange, ScNext, ScRestore, ScRestoreFile, ScGC, ScDedup}

// Measure is one measured command.
type Measure struct {
	Target    string        `json:"target"`
	Tool      string        `json:"tool"`
	Scenario  string        `json:"scenario"`
	Rep       int           `json:"rep"`
	Wall      time.Duration `json:"wall_ns"`
	CPU       time.Duration `json:"cpu_ns"`
	MaxRSS    int64         `json:"max_rss_bytes"`
	ReadBytes int64         `json:"read_bytes"` // from disk, by the kernel's count
	Stored    int64         `json:"stored_bytes"`
	Input     int64         `json:"input_bytes,omitempty"`
	// Peak RSS of each daemon of the tool during the command (its CPU
	// time is in CPU).
	Procs map[string]int64 `json:"daemon_peak_rss_bytes,omitempty"`
	// Through the counting proxy, for targets on S3.
	Requests int64 `json:"store_requests"`
	Sent     int64 `json:"bytes_sent_to_store"`
	Received int64 `json:"bytes_received_from_store"`
}

// Options configure a run.
type Options struct {
	Tools []Tool
	// Data makes (or remakes) version 0 of the data set in dir.
	Data func(dir string) error
	// Next turns version i-1 into version i in dir.
	Next func(dir string, i int) error
	Reps int
	// Targets are where repositories live; none means LocalTarget.
	Targets []Target
	Work    string // scratch folder
	// RestoreDir, if set, holds the restore targets instead of Work: a
	// tmpfs there measures the tools rather than the file system (ext4
	// that just freed many inodes creates files several times slower).
	RestoreDir string
	// Dedup runs the 10-version scenario (slow on big trees).
	Dedup bool
	Log   func(string)
}

// Run measures every tool on every scenario, Reps times, interleaving the
// tools so slow phases of a shared machine hit all of them alike.
func Run(ctx context.Context, o Options) ([]Measure, error) {
	if o.Reps < 1 {
		o.Reps = 1
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		}
	}
	if len(o.Targets) == 0 {
		o.Targets = []Target{LocalTarget}
	}
	proxies := make([]*storeProxy, len(o.Targets))
	for i, tg := range o.Targets {
		if tg.S3 == nil {
			continue
		}
		if err := ensureBucket(ctx, tg.S3); err != nil {
			return nil, fmt.Errorf("target %s: %w", tg.Name, err)
		}
		p, err := startStoreProxy(tg.S3.Endpoint)
		if err != nil {
			return nil, err
		}
		defer p.close()
		proxies[i] = p
	}
	var out []Measure
	for rep := 0; rep < o.Reps; rep++ {
		for i, tg := range o.Targets {
			for k := range o.Tools {
				t := o.Tools[(k+rep)%len(o.Tools)] // rotate who goes first
				logf("rep %d, %s: %s", rep+1, tg.Name, t.Name())
				ms, err := runTool(ctx, t, o, rep, tg, proxies[i])
				if err != nil {
					return out, fmt.Errorf("%s on %s: %w", t.Name(), tg.Name, err)
				}
				out = append(out, ms...)
			}
		}
	}
	return out, nil
}

func runTool(ctx context.Context, t Tool, o Options, rep int, tg Target, proxy *storeProxy) ([]Measure, error) {
	dir := filepath.Join(o.Work, fmt.Sprintf("%s-%s-%d", t.Name(), tg.Name, rep))
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := o.Data(src); err != nil {
		return nil, fmt.Errorf("data set: %w", err)
	}
	loc := Location{Dir: filepath.Join(dir, "repo")}
	stored := func() (int64, error) { return DirSize(loc.Dir) }
	if ep := tg.S3; ep != nil {
		prefix := fmt.Sprintf("%s-%d-%d", t.Name(), rep, time.Now().UnixNano())
		loc = Location{S3: &S3Location{Endpoint: proxy.addr, Bucket: ep.Bucket, Prefix: prefix, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey}}
		stored = func() (int64, error) { return prefixSize(ctx, ep, prefix) }
		defer deletePrefix(context.WithoutCancel(ctx), ep, prefix)
	}
	env, err := t.Prepare(dir, src, loc)
	if err != nil {
		return nil, err
	}
	if c, ok := t.(Closer); ok {
		defer c.Close()
	}
	var out []Measure
	measure := func(sc string, args []string) error {
		if proxy != nil {
			proxy.reset()
		}
		m, err := run(ctx, t, env, args)
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		m.Target, m.Tool, m.Scenario, m.Rep = tg.Name, t.Name(), sc, rep
		if proxy != nil {
			m.Requests, m.Sent, m.Received = proxy.requests.Load(), proxy.sent.Load(), proxy.received.Load()
		}
		if m.Stored, err = stored(); err != nil {
			return fmt.Errorf("%s: stored bytes: %w", sc, err)
		}
		out = append(out, m)
		return nil
	}
	if err := measure(ScInitial, t.Backup(src)); err != nil {
		return out, err
	}
	if err := measure(ScNoChange, t.Backup(src)); err != nil {
		return out, err
	}
	if err := o.Next(src, 1); err != nil {
		return out, err
	}
	if err := measure(ScNext, t.Backup(src)); err != nil {
		return out, err
	}
	dst := filepath.Join(dir, "restore")
	if o.RestoreDir != "" {
		dst = filepath.Join(o.RestoreDir, filepath.Base(dir))
		defer os.RemoveAll(dst)
	}
	if err := measure(ScRestore, t.Restore(src, dst)); err != nil {
		return out, err
	}
	os.RemoveAll(dst)
	rel, err := someFile(src)
	if err != nil {
		return out, err
	}
	if err := measure(ScRestoreFile, t.RestoreFile(src, rel, dst)); err != nil {
		return out, err
	}
	os.RemoveAll(dst)
	for _, args := range t.ForgetOldest(3) {
		if _, err := run(ctx, t, env, args); err != nil {
			return out, fmt.Errorf("forget: %w", err)
		}
	}
	if err := measure(ScGC, t.GC()); err != nil {
		return out, err
	}
	if o.Dedup {
		// Versions 2..9 on top of the three snapshots' data: stored bytes
		// after ten versions against the bytes of all ten.
		input, _ := DirSize(src)
		var last Measure
		if proxy != nil {
			proxy.reset()
		}
		for i := 2; i <= 10; i++ {
			if err := o.Next(src, i); err != nil {
				return out, err
			}
			sz, _ := DirSize(src)
			input += sz
			m, err := run(ctx, t, env, t.Backup(src))
			if err != nil {
				return out, fmt.Errorf("%s: %w", ScDedup, err)
			}
			last.Wall += m.Wall
			last.CPU += m.CPU
			last.MaxRSS = max(last.MaxRSS, m.MaxRSS)
			last.ReadBytes += m.ReadBytes
			for name, rss := range m.Procs {
				if last.Procs == nil {
					last.Procs = map[string]int64{}
				}
				last.Procs[name] = max(last.Procs[name], rss)
			}
		}
		last.Target, last.Tool, last.Scenario, last.Rep = tg.Name, t.Name(), ScDedup, rep
		if proxy != nil {
			last.Requests, last.Sent, last.Received = proxy.requests.Load(), proxy.sent.Load(), proxy.received.Load()
		}
		if last.Stored, err = stored(); err != nil {
			return out, fmt.Errorf("%s: stored bytes: %w", ScDedup, err)
		}
		last.Input = input
		out = append(out, last)
	}
	return out, nil
}

// run executes one command and reads the kernel's accounting of it and of
// the tool's daemons, if it has any.
func run(ctx context.Context, t Tool, env, args []string) (Measure, error) {
	var dm *daemonMeter
	if d, ok := t.(Daemons); ok {
		var err error
		if dm, err = startDaemonMeter(d.Daemons()); err != nil {
			return Measure{}, err
		}
	}
	cmd := command(t.Binary(), env, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if ctx.Err() != nil {
		return Measure{}, ctx.Err()
	}
	if err != nil {
		return Measure{}, fmt.Errorf("%s %v: %v: %s", t.Name(), args, err, tail(out))
	}
	m := Measure{Wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		m.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		m.ReadBytes = ru.Inblock * 512
	}
	if dm != nil {
		if err := dm.stop(&m); err != nil {
			return Measure{}, err
		}
	}
	return m, nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		return "..." + string(b[len(b)-2000:])
	}
	return string(b)
}

// someFile picks a regular file of the tree (the same for every tool).
func someFile(src string) (string, error) {
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(src, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("no file in the data set: %v", err)
	}
	sort.Strings(files)
	return files[len(files)/2], nil
}
