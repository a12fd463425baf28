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
	Tool      string        `json:"tool"`
	Scenario  string        `json:"scenario"`
	Rep       int           `json:"rep"`
	Wall      time.Duration `json:"wall_ns"`
	CPU       time.Duration `json:"cpu_ns"`
	MaxRSS    int64         `json:"max_rss_bytes"`
	ReadBytes int64         `json:"read_bytes"` // from disk, by the kernel's count
	Stored    int64         `json:"stored_bytes"`
	Input     int64         `json:"input_bytes,omitempty"`
}

// Options configure a run.
type Options struct {
	Tools []Tool
	// Data makes (or remakes) version 0 of the data set in dir.
	Data func(dir string) error
	// Next turns version i-1 into version i in dir.
	Next func(dir string, i int) error
	Reps int
	Work string // scratch folder
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
	var out []Measure
	for rep := 0; rep < o.Reps; rep++ {
		for k := range o.Tools {
			t := o.Tools[(k+rep)%len(o.Tools)] // rotate who goes first
			logf("rep %d: %s", rep+1, t.Name())
			ms, err := runTool(ctx, t, o, rep)
			if err != nil {
				return out, fmt.Errorf("%s: %w", t.Name(), err)
			}
			out = append(out, ms...)
		}
	}
	return out, nil
}

func runTool(ctx context.Context, t Tool, o Options, rep int) ([]Measure, error) {
	dir := filepath.Join(o.Work, fmt.Sprintf("%s-%d", t.Name(), rep))
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := o.Data(src); err != nil {
		return nil, fmt.Errorf("data set: %w", err)
	}
	env, err := t.Prepare(dir)
	if err != nil {
		return nil, err
	}
	repoDir := filepath.Join(dir, "repo")
	var out []Measure
	measure := func(sc string, args []string) error {
		m, err := run(ctx, t, env, args)
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		m.Tool, m.Scenario, m.Rep = t.Name(), sc, rep
		m.Stored, _ = DirSize(repoDir)
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
	if _, err := run(ctx, t, env, t.ForgetOldest(3)); err != nil {
		return out, fmt.Errorf("forget: %w", err)
	}
	if err := measure(ScGC, t.GC()); err != nil {
		return out, err
	}
	if o.Dedup {
		// Versions 2..9 on top of the three snapshots' data: stored bytes
		// after ten versions against the bytes of all ten.
		input, _ := DirSize(src)
		var last Measure
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
		}
		last.Tool, last.Scenario, last.Rep = t.Name(), ScDedup, rep
		last.Stored, _ = DirSize(repoDir)
		last.Input = input
		out = append(out, last)
	}
	return out, nil
}

// run executes one command and reads the kernel's accounting of it.
func run(ctx context.Context, t Tool, env, args []string) (Measure, error) {
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
