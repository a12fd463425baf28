package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

// Sentinel errors of repository locks.
var (
	// ErrLocked: another process holds a lock that conflicts with the one
	// asked for; nothing was done.
	ErrLocked = errors.New("repository is in use by another process")
	// ErrLockLost: the lock could not be refreshed for so long that other
	// processes may take it for stale; the work under it was stopped.
	ErrLockLost = errors.New("could not keep the repository lock fresh")
)

// Lock timing. A lock not refreshed for LockStaleAfter is taken for the
// lock of a process that died, so the holder refreshes it well within
// that, and gives up its work when it cannot. Clocks of the machines that
// share a bucket must agree to within a few minutes.
var (
	LockStaleAfter   = 30 * time.Minute
	lockRefreshEvery = 5 * time.Minute
)

// lockOwner tells this process's locks from every other's. Work inside one
// process is kept safe by its catalog's sessions, not by locks.
var lockOwner = func() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}()

// RepoLock is a lock this process holds on a repository.
type RepoLock struct {
	r      *repo.Repository
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu   sync.Mutex
	name string
}

// Lock takes a lock on the repository for op: shared for work that only
// adds to it (a backup), exclusive for work that deletes from it (garbage
// collection). Shared locks of different processes coexist; an exclusive
// one excludes every other lock. Without locks, a collection on one
// machine could delete packs that a backup on another machine has just
// deduplicated against.
//
// The returned context is cancelled with ErrLockLost if the lock cannot be
// kept fresh; the work should run under it. Unlock releases the lock.
func (l *Local) Lock(ctx context.Context, op string, exclusive bool) (context.Context, *RepoLock, error) {
	return lockRepo(ctx, l.Repo, l.Index.Instance(), op, exclusive)
}

// lockRepo takes the lock of Local.Lock for a process holding the index
// named instance.
func lockRepo(ctx context.Context, r *repo.Repository, instance, op string, exclusive bool) (context.Context, *RepoLock, error) {
	l := thisProcess(instance)
	l.Exclusive, l.Op, l.Time = exclusive, op, time.Now().UTC()
	name, err := r.PutLock(ctx, l)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", r.Location(), err)
	}
	// Written first, then listed: of two processes that race, at least one
	// sees the other and backs off (both may).
	others, err := r.Locks(ctx)
	if err == nil {
		err = conflict(others, l, time.Now())
	}
	if err != nil {
		_ = r.DeleteLock(context.WithoutCancel(ctx), name)
		return nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	lk := &RepoLock{r: r, cancel: cancel, name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go lk.refresh(l)
	return ctx, lk, nil
}

// thisProcess returns a lock's fields that say who holds it.
func thisProcess(instance string) repo.Lock {
	l := repo.Lock{Owner: lockOwner, PID: os.Getpid(), PIDNS: pidNamespace(), Instance: instance}
	l.Host, _ = os.Hostname()
	if u, err := currentUser(); err == nil {
		l.User = u
	}
	return l
}

// pidNamespace names this process's pid namespace on Linux ("pid:[N]"),
// and is empty elsewhere.
func pidNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}

// stale reports whether a lock other than mine belongs to a process that
// is gone:
//   - not refreshed for LockStaleAfter;
//   - written on this host for the index I now hold: one process at a
//     time can hold it, so the writer has ended (a coordinator restarted
//     in a container has the same host name and pid as before);
//   - written on this host, in my pid namespace, by a pid that no longer
//     runs (a backup or gc killed here need not block the next run for
//     half an hour). A pid of another namespace (another container with
//     this host name) cannot be looked up and is left to the age rule,
//     as is a live process that reuses the pid: both err on the safe side.
func stale(l repo.Lock, mine repo.Lock, now time.Time) bool {
	if now.Sub(l.Time) > LockStaleAfter {
		return true
	}
	if mine.Host == "" || l.Host != mine.Host {
		return false
	}
	if l.Instance != "" && l.Instance == mine.Instance && l.Owner != mine.Owner {
		return true
	}
	return l.PID > 0 && l.PIDNS == mine.PIDNS && !processAlive(l.PID)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// conflict returns an ErrLocked naming the first live lock of another
// owner that mine cannot coexist with.
func conflict(locks []repo.LockObject, mine repo.Lock, now time.Time) error {
	for _, o := range locks {
		if o.Owner == mine.Owner || stale(o.Lock, mine, now) {
			continue
		}
		if !mine.Exclusive && !o.Exclusive {
			continue
		}
		kind := "a shared"
		if o.Exclusive {
			kind = "an exclusive"
		}
		return fmt.Errorf("%w: %s lock for %s by %s@%s (pid %d), refreshed %s ago (%s)",
			ErrLocked, kind, o.Op, o.User, o.Host, o.PID, now.Sub(o.Time).Round(time.Second), o.Name)
	}
	return nil
}

// refresh writes a fresh copy of the lock every lockRefreshEvery and
// deletes the previous one. When it has failed for so long that others
// may soon call the lock stale, it cancels the work.
func (lk *RepoLock) refresh(l repo.Lock) {
	defer close(lk.done)
	t := time.NewTicker(lockRefreshEvery)
	defer t.Stop()
	fresh := l.Time
	for {
		select {
		case <-lk.stop:
			return
		case <-t.C:
		}
		l.Time = time.Now().UTC()
		ctx, cancel := context.WithTimeout(context.Background(), lockRefreshEvery)
		name, err := lk.r.PutLock(ctx, l)
		if err == nil {
			lk.mu.Lock()
			old := lk.name
			lk.name = name
			lk.mu.Unlock()
			_ = lk.r.DeleteLock(ctx, old)
			fresh = l.Time
		}
		cancel()
		if err != nil && l.Time.Sub(fresh) > LockStaleAfter-2*lockRefreshEvery {
			lk.cancel(fmt.Errorf("%w (last refreshed %s ago): %v", ErrLockLost, l.Time.Sub(fresh).Round(time.Second), err))
			return
		}
	}
}

// Unlock stops refreshing and deletes the lock, even when ctx is done.
func (lk *RepoLock) Unlock(ctx context.Context) error {
	var err error
	lk.once.Do(func() {
		close(lk.stop)
		<-lk.done
		lk.cancel(nil)
		lk.mu.Lock()
		name := lk.name
		lk.mu.Unlock()
		err = lk.r.DeleteLock(context.WithoutCancel(ctx), name)
	})
	return err
}

// RemoveLocks deletes the locks of other processes: with all, every one;
// else only stale ones (of processes that died without releasing them:
// on this host, or anywhere once not refreshed for LockStaleAfter). The
// caller holds the index named instance open until it returns, or passes
// "" if it holds none.
func RemoveLocks(ctx context.Context, r *repo.Repository, instance string, all bool) ([]repo.LockObject, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []repo.LockObject
	now := time.Now()
	mine := thisProcess(instance)
	for _, o := range locks {
		if o.Owner == mine.Owner || (!all && !stale(o.Lock, mine, now)) {
			continue
		}
		if err := r.DeleteLock(ctx, o.Name); err != nil {
			return removed, err
		}
		removed = append(removed, o)
	}
	return removed, nil
}
