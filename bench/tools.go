package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Tool drives one backup program through its command line. Commands are
// returned unstarted so the runner can measure them.
type Tool interface {
	Name() string
	// Prepare makes a fresh, empty repository at loc for backups of src
	// (dir is a scratch folder of the tool's own, for caches and state)
	// and returns the environment every later command needs.
	Prepare(dir, src string, loc Location) ([]string, error)
	Backup(src string) []string
	Restore(src, dst string) []string
	RestoreFile(src, rel, dst string) []string
	// ForgetOldest forgets the oldest of n snapshots (not measured); GC
	// then reclaims its space (measured).
	ForgetOldest(n int) []string
	GC() []string
	Binary() string
}

// Cairn is cairn's own command line.
type Cairn struct{ Bin string }

func (c Cairn) Name() string   { return "cairn" }
func (c Cairn) Binary() string { return c.Bin }

func (c Cairn) Prepare(dir, _ string, loc Location) ([]string, error) {
	env := []string{"CAIRN_STATE_DIR=" + filepath.Join(dir, "state"), "CAIRN_PASSWORD=bench"}
	if s := loc.S3; s != nil {
		env = append(env, fmt.Sprintf("CAIRN_REPO=s3://%s/%s/%s", s.Endpoint, s.Bucket, s.Prefix), "CAIRN_S3_HTTP=1",
			"AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey)
	} else {
		env = append(env, "CAIRN_REPO="+loc.Dir)
	}
	out, err := command(c.Bin, env, "init", "-q").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("cairn init: %v: %s", err, out)
	}
	return env, nil
}

func (c Cairn) Backup(src string) []string {
	return []string{"snapshot", "-q", "--keep", "0", "--node", "bench", src}
}
func (c Cairn) Restore(_, dst string) []string {
	return []string{"restore", "-q", "latest", "--target", dst}
}
func (c Cairn) RestoreFile(_, rel, dst string) []string {
	return []string{"restore", "-q", "latest:" + rel, "--target", dst}
}
func (c Cairn) ForgetOldest(n int) []string {
	return []string{"forget", "-q", "--keep-last", fmt.Sprint(n - 1), "--no-gc"}
}
func (c Cairn) GC() []string { return []string{"gc", "-q"} }

// Restic is restic with its usual settings: repository version 2, so
// zstd compression is on ("auto"), and its local cache.
type Restic struct{ Bin string }

func (r Restic) Name() string   { return "restic" }
func (r Restic) Binary() string { return r.Bin }

func (r Restic) Prepare(dir, _ string, loc Location) ([]string, error) {
	env := []string{"RESTIC_PASSWORD=bench", "RESTIC_CACHE_DIR=" + filepath.Join(dir, "cache"), "RESTIC_COMPRESSION=auto"}
	if s := loc.S3; s != nil {
		env = append(env, fmt.Sprintf("RESTIC_REPOSITORY=s3:http://%s/%s/%s", s.Endpoint, s.Bucket, s.Prefix),
			"AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey)
	} else {
		env = append(env, "RESTIC_REPOSITORY="+loc.Dir)
	}
	out, err := command(r.Bin, env, "init", "--repository-version", "2").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("restic init: %v: %s", err, out)
	}
	return env, nil
}

func (r Restic) Backup(src string) []string {
	return []string{"backup", "-q", "--host", "bench", src}
}
func (r Restic) Restore(src, dst string) []string {
	return []string{"restore", "-q", "latest", "--target", dst}
}
func (r Restic) RestoreFile(src, rel, dst string) []string {
	return []string{"restore", "-q", "latest", "--target", dst, "--include", filepath.Join(src, rel)}
}
func (r Restic) ForgetOldest(n int) []string {
	return []string{"forget", "-q", "--keep-last", fmt.Sprint(n - 1)}
}
func (r Restic) GC() []string { return []string{"prune", "-q"} }

func command(bin string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append([]string{}, os.Environ()...), env...)
	return cmd
}

// FindPeers returns the peers whose binaries are on PATH.
func FindPeers() []Tool {
	var out []Tool
	if p, err := exec.LookPath("restic"); err == nil {
		out = append(out, Restic{Bin: p})
	}
	return out
}
