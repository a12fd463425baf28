package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/backend"
)

// globals are the flags every command shares.
type globals struct {
	repo         string
	passwordFile string
	stateDir     string
	s3           backend.Options
	quiet        bool
	admin        adminFlags
}

var version = "dev"

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "Deduplicating, encrypted backups to a local folder or an S3 bucket",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `cairn backs up directories into a repository: a local folder (the default,
$XDG_DATA_HOME/cairn/repo) or an S3 bucket (s3://HOST[:PORT]/BUCKET[/PREFIX]).
Data is cut into content-defined chunks, deduplicated, compressed and
encrypted; only what changed since the last snapshot is read and stored.`,
	}
	// Figures depend on the build: without cgo, compression takes longer.
	root.SetVersionTemplate("cairn {{.Version}}\ncompression: " + repo.Compressor + "\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err.Error()} })
	f := root.PersistentFlags()
	f.StringVarP(&g.repo, "repo", "r", os.Getenv("CAIRN_REPO"), "repository: a path or s3://HOST[:PORT]/BUCKET[/PREFIX] (env CAIRN_REPO)")
	f.StringVar(&g.passwordFile, "password-file", os.Getenv("CAIRN_PASSWORD_FILE"), "read the password from this file (env CAIRN_PASSWORD_FILE; or set CAIRN_PASSWORD)")
	f.StringVar(&g.stateDir, "state-dir", os.Getenv("CAIRN_STATE_DIR"), "folder for the local index (env CAIRN_STATE_DIR; default $XDG_STATE_HOME/cairn)")
	f.StringVar(&g.s3.AccessKey, "s3-access-key", os.Getenv("AWS_ACCESS_KEY_ID"), "S3 access key (env AWS_ACCESS_KEY_ID)")
	f.StringVar(&g.s3.SecretKey, "s3-secret-key", os.Getenv("AWS_SECRET_ACCESS_KEY"), "S3 secret key (env AWS_SECRET_ACCESS_KEY)")
	f.StringVar(&g.s3.Region, "s3-region", os.Getenv("AWS_REGION"), "S3 region (env AWS_REGION)")
	f.BoolVar(&g.s3.HTTP, "s3-http", os.Getenv("CAIRN_S3_HTTP") == "1", "talk to S3 over plain http, for MinIO on a private network (env CAIRN_S3_HTTP=1)")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors and results")
	g.admin.register(root)

	root.AddCommand(
		newInitCmd(g), newSnapshotCmd(g), newRestoreCmd(g), newSnapshotsCmd(g),
		newLsCmd(g), newStatsCmd(g), newKeyCmd(g), newIndexCmd(g),
		newForgetCmd(g), newGCCmd(g), newCheckCmd(g), newDiffCmd(g), newUnlockCmd(g),
		newCoordinatorCmd(g), newAgentCmd(g), newNodeCmd(&g.admin), newHistoryCmd(&g.admin), newBackupNowCmd(&g.admin),
		newBenchCmd(),
	)
	return root
}

func (g *globals) location() (string, error) {
	if g.repo != "" {
		return g.repo, nil
	}
	return backend.DefaultLocation()
}

// password reads the password from --password-file, CAIRN_PASSWORD or a
// terminal prompt, in that order.
func (g *globals) password(prompt string, confirm bool) (string, error) {
	return readSecret(g.passwordFile, "CAIRN_PASSWORD", prompt, confirm)
}

func readSecret(file, env, prompt string, confirm bool) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if v, ok := os.LookupEnv(env); ok {
		return v, nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return "", fmt.Errorf("no password: set %s, use --password-file, or run on a terminal", env)
	}
	read := func(p string) (string, error) {
		fmt.Fprint(os.Stderr, p)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	pw, err := read(prompt)
	if err != nil {
		return "", err
	}
	if confirm {
		again, err := read("enter it again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the passwords do not match")
		}
	}
	return pw, nil
}

func (g *globals) openRepo(ctx context.Context) (*repo.Repository, error) {
	loc, err := g.location()
	if err != nil {
		return nil, err
	}
	st, err := backend.Open(ctx, loc, g.s3, false)
	if err != nil {
		return nil, withHint(err, loc)
	}
	pw, err := g.password("password for "+loc+": ", false)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, st, pw)
	if err != nil {
		return nil, withHint(err, loc)
	}
	return r, nil
}

func withHint(err error, loc string) error {
	switch {
	case errors.Is(err, repo.ErrNoRepository):
		return fmt.Errorf("%w (create one with `cairn init -r %s`)", err, loc)
	case errors.Is(err, repo.ErrNoBucket):
		return fmt.Errorf("%w (`cairn init -r %s` creates it)", err, loc)
	case errors.Is(err, repo.ErrWrongPassword):
		return fmt.Errorf("%s: %w", loc, err)
	}
	return err
}

func (g *globals) indexDir(repoID string) (string, error) {
	if g.stateDir != "" {
		return index.DefaultDirIn(g.stateDir, repoID), nil
	}
	return index.DefaultDir(repoID)
}

// openLocal opens the repository and its index, updated from the bucket.
func (g *globals) openLocal(ctx context.Context) (*agent.Local, error) {
	r, err := g.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := g.indexDir(r.Config().ID)
	if err != nil {
		return nil, err
	}
	l, st, err := agent.OpenLocal(ctx, r, dir)
	if err != nil {
		return nil, err
	}
	for _, p := range st.Problems {
		g.warnf("index: %v", p)
	}
	if !g.quiet && (st.Reloaded || st.IndexObjects > 20) {
		g.infof("index: read %d index objects, %d packs", st.IndexObjects, st.PacksFromIndex)
	}
	return l, nil
}

func (g *globals) infof(format string, a ...any) {
	if !g.quiet {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

func (g *globals) warnf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "warning: "+format+"\n", a...)
}

// stdoutWriter is buffered; callers flush.
func stdoutWriter() *bufio.Writer { return bufio.NewWriterSize(os.Stdout, 64<<10) }

// openAndFind parses snapshot selectors (a bad one is a usage error before
// any password is asked), opens the repository and its index, and finds
// each snapshot. The caller closes the returned Local.
func (g *globals) openAndFind(ctx context.Context, texts ...string) (*agent.Local, []*repo.Snapshot, []agent.Selector, error) {
	sels := make([]agent.Selector, len(texts))
	for i, t := range texts {
		sel, err := agent.ParseSelector(t)
		if err != nil {
			return nil, nil, nil, usageError{err.Error()}
		}
		sels[i] = sel
	}
	l, err := g.openLocal(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	sns := make([]*repo.Snapshot, len(sels))
	for i, sel := range sels {
		if sns[i], err = l.Find(sel); err != nil {
			l.Close()
			return nil, nil, nil, err
		}
	}
	return l, sns, sels, nil
}
