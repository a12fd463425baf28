package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// ForgetOldest forgets the oldest of n snapshots by the commands it
	// returns, run in order and not measured; GC then reclaims its space
	// (measured).
	ForgetOldest(n int) [][]string
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
func (c Cairn) ForgetOldest(n int) [][]string {
	return [][]string{{"forget", "-q", "--keep-last", fmt.Sprint(n - 1), "--no-gc"}}
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
func (r Restic) ForgetOldest(n int) [][]string {
	return [][]string{{"forget", "-q", "--keep-last", fmt.Sprint(n - 1)}}
}
func (r Restic) GC() []string { return []string{"prune", "-q"} }

// Kopia is kopia with zstd compression (its default is none) and its
// other defaults: cache, content-defined splitter, automatic maintenance.
// Every snapshot is kept, as with the other tools, until ForgetOldest.
type Kopia struct{ Bin string }

func (k Kopia) Name() string   { return "kopia" }
func (k Kopia) Binary() string { return k.Bin }

func (k Kopia) Prepare(dir, _ string, loc Location) ([]string, error) {
	env := []string{"KOPIA_PASSWORD=bench-password", "KOPIA_CHECK_FOR_UPDATES=false",
		"KOPIA_CONFIG_PATH=" + filepath.Join(dir, "kopia", "repository.config"),
		"KOPIA_CACHE_DIRECTORY=" + filepath.Join(dir, "kopia", "cache"),
		"KOPIA_LOG_DIR=" + filepath.Join(dir, "kopia", "logs")}
	create := []string{"repository", "create"}
	if s := loc.S3; s != nil {
		create = append(create, "s3", "--bucket", s.Bucket, "--prefix", s.Prefix+"/", "--endpoint", s.Endpoint,
			"--disable-tls", "--access-key", s.AccessKey, "--secret-access-key", s.SecretKey)
	} else {
		create = append(create, "filesystem", "--path", loc.Dir)
	}
	for _, args := range [][]string{create,
		{"policy", "set", "--global", "--compression", "zstd",
			"--keep-latest", "1000", "--keep-hourly", "0", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0", "--keep-annual", "0"},
	} {
		if out, err := command(k.Bin, env, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kopia %s: %v: %s", strings.Join(args[:2], " "), err, out)
		}
	}
	return env, nil
}

func (k Kopia) Backup(src string) []string {
	return []string{"snapshot", "create", src}
}

// Restore restores by the source's path, which takes its latest snapshot.
func (k Kopia) Restore(src, dst string) []string {
	return []string{"restore", src, dst}
}

// RestoreFile writes the file as dst itself: kopia makes no parent folders
// for a file.
func (k Kopia) RestoreFile(src, rel, dst string) []string {
	return []string{"restore", filepath.Join(src, rel), dst}
}
func (k Kopia) ForgetOldest(n int) [][]string {
	return [][]string{
		{"policy", "set", "--global", "--keep-latest", fmt.Sprint(n - 1)},
		{"snapshot", "expire", "--all", "--delete"},
	}
}

// GC is kopia's full maintenance with no safety margin, so the forgotten
// snapshot's data goes now rather than after its default hours of delay.
func (k Kopia) GC() []string {
	return []string{"maintenance", "run", "--full", "--safety", "none"}
}

func command(bin string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append([]string{}, os.Environ()...), env...)
	return cmd
}

// FindPeers returns the peers to measure: each at the path given, or else
// found on PATH, or else left out.
func FindPeers(restic, kopia string) []Tool {
	find := func(given, name string) string {
		if given != "" {
			return given
		}
		p, _ := exec.LookPath(name)
		return p
	}
	var out []Tool
	if p := find(restic, "restic"); p != "" {
		out = append(out, Restic{Bin: p})
	}
	if p := find(kopia, "kopia"); p != "" {
		out = append(out, Kopia{Bin: p})
	}
	return out
}
