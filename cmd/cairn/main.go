// Command cairn is a content-addressed, deduplicating backup tool.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// Exit codes. Scripts branch on these; the README lists them.
const (
	exitError       = 1
	exitUsage       = 2
	exitPartial     = 3 // snapshot saved, but some files could not be read
	exitNoRepo      = 10
	exitNoBucket    = 11
	exitWrongPass   = 12
	exitCorrupt     = 13
	exitLocked      = 14
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if os.Getenv("GOGC") == "" {
		tuneGC()
	}
	stopProfiles := startProfiles()
	err := newRootCmd().ExecuteContext(ctx)
	stopProfiles()
	stop()
	if err == nil {
		return
	}
	var pe partialError
	switch {
	case errors.As(err, &pe):
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		os.Exit(exitPartial)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "cairn: interrupted")
		os.Exit(exitInterrupted)
	}
	fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
	if errors.Is(err, agent.ErrLocked) {
		fmt.Fprintf(os.Stderr, "cairn: if that process is gone, `cairn unlock` removes locks not refreshed for %v, `cairn unlock --all` every lock\n", agent.LockStaleAfter)
	}
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var ue usageError
	var ce corruptError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return exitCorrupt
	case errors.Is(err, repo.ErrNoBucket):
		return exitNoBucket
	case errors.Is(err, repo.ErrNoRepository):
		return exitNoRepo
	case errors.Is(err, repo.ErrWrongPassword):
		return exitWrongPass
	case errors.Is(err, repo.ErrCorrupt):
		return exitCorrupt
	case errors.Is(err, index.ErrLocked), errors.Is(err, agent.ErrLocked):
		return exitLocked
	case errors.Is(err, agent.ErrAmbiguous):
		return exitUsage
	case errors.Is(err, agent.ErrWouldForgetAll):
		return exitUsage
	}
	return exitError
}

// usageError marks bad command lines.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// partialError: the command did its job but some inputs were unreadable.
type partialError struct{ msg string }

func (e partialError) Error() string { return e.msg }
