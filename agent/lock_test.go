package agent_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/mem"
	"github.com/cairn-backup/cairn/repo/storetest"
)

// foreignLock writes the lock of another process, as another machine
// sharing the bucket would.
func foreignLock(t *testing.T, r *repo.Repository, exclusive bool, age time.Duration) string {
	t.Helper()
	name, err := r.PutLock(context.Background(), repo.Lock{
		Owner: "another-process", Exclusive: exclusive, Op: "elsewhere", Host: "laptop2", User: "ann", PID: 4242,
		Time: time.Now().Add(-age).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func lockNames(t *testing.T, r *repo.Repository) []string {
	t.Helper()
	locks, err := r.Locks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range locks {
		names = append(names, o.Name)
	}
	return names
}

func TestLockConflicts(t *testing.T) {
	cases := []struct {
		name          string
		held          bool // another process holds a lock
		heldExclusive bool
		heldAge       time.Duration
		want          bool // exclusive wanted
		locked        bool
	}{
		{"nothing held, shared", false, false, 0, false, false},
		{"nothing held, exclusive", false, false, 0, true, false},
		{"shared held, shared", true, false, time.Minute, false, false},
		{"shared held, exclusive", true, false, time.Minute, true, true},
		{"exclusive held, shared", true, true, time.Minute, false, true},
		{"exclusive held, exclusive", true, true, time.Minute, true, true},
		{"stale exclusive held, exclusive", true, true, agent.LockStaleAfter + time.Minute, true, false},
		{"stale shared held, exclusive", true, false, agent.LockStaleAfter + time.Minute, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			l := newLocal(t, mem.New())
			var before []string
			if c.held {
				before = append(before, foreignLock(t, l.Repo, c.heldExclusive, c.heldAge))
			}
			wctx, lk, err := l.Lock(ctx, "test", c.want)
			if c.locked {
				if !errors.Is(err, agent.ErrLocked) {
					t.Fatalf("got %v, want ErrLocked", err)
				}
				for _, want := range []string{"elsewhere", "ann@laptop2", "pid 4242"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %q", err, want)
					}
				}
				if got := lockNames(t, l.Repo); len(got) != len(before) || got[0] != before[0] {
					t.Errorf("locks after a refusal: %v, want only %v", got, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(lockNames(t, l.Repo)); got != len(before)+1 {
				t.Errorf("%d locks while held, want %d", got, len(before)+1)
			}
			// Locks of one process never conflict: its catalog orders its work.
			_, inner, err := l.Lock(ctx, "nested", c.want)
			if err != nil {
				t.Fatalf("second lock of the same process: %v", err)
			}
			if err := inner.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := lk.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if wctx.Err() == nil {
				t.Error("the work's context outlives its lock")
			}
			if got := len(lockNames(t, l.Repo)); got != len(before) {
				t.Errorf("%d locks after unlock, want %d", got, len(before))
			}
		})
	}
}

func TestLockIsRefreshedAndLostWhenItCannotBe(t *testing.T) {
	defer agent.SetLockTiming(20*time.Millisecond, 300*time.Millisecond)()
	ctx := context.Background()
	st := &storetest.Faulty{Store: mem.New()}
	l := newLocal(t, st)
	wctx, lk, err := l.Lock(ctx, "backup", false)
	if err != nil {
		t.Fatal(err)
	}
	first := lockNames(t, l.Repo)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := lockNames(t, l.Repo)
		if len(got) == 1 && got[0] != first[0] {
			break // refreshed: a new object, the old one gone
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock never refreshed: %v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st.SetFailPut(func(name string, _ int) bool { return strings.HasPrefix(name, "locks/") })
	select {
	case <-wctx.Done():
		if !errors.Is(context.Cause(wctx), agent.ErrLockLost) {
			t.Fatalf("work stopped with %v, want ErrLockLost", context.Cause(wctx))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("work went on although the lock could not be refreshed")
	}
	if err := lk.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCollectionWaitsForOtherMachines: two machines share a bucket without
// a coordinator. While one backs up, the other's collection deletes
// nothing; a backup is refused while a collection runs elsewhere.
func TestCollectionWaitsForOtherMachines(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t, mem.New())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("first version"))
	old := snapshot(t, l, src, nil)
	writeFile(t, filepath.Join(src, "a"), []byte("second version, other bytes"))
	snapshot(t, l, src, nil)
	if err := l.Forget(ctx, []repo.SnapshotID{old.ID}); err != nil {
		t.Fatal(err)
	}

	backup := foreignLock(t, l.Repo, false, time.Minute)
	st, err := agent.GC(ctx, l, agent.GCOptions{})
	if !errors.Is(err, agent.ErrLocked) || st.PacksDeleted+st.PacksRepacked != 0 {
		t.Fatalf("collection beside another machine's backup: %+v, %v", st, err)
	}
	if _, err := agent.GC(ctx, l, agent.GCOptions{DryRun: true}); err != nil {
		t.Errorf("a dry run deletes nothing and should run beside a backup: %v", err)
	}
	if err := l.Repo.DeleteLock(ctx, backup); err != nil {
		t.Fatal(err)
	}

	foreignLock(t, l.Repo, true, time.Minute)
	if _, err := l.Snapshot(ctx, agent.BackupOptions{Node: "testnode", Path: src}, false); !errors.Is(err, agent.ErrLocked) {
		t.Fatalf("backup beside another machine's collection: %v", err)
	}
	removed, err := agent.RemoveLocks(ctx, l.Repo, l.Index.Instance(), false)
	if err != nil || len(removed) != 0 {
		t.Fatalf("unlock removed a fresh lock: %v, %v", removed, err)
	}
	if removed, err = agent.RemoveLocks(ctx, l.Repo, l.Index.Instance(), true); err != nil || len(removed) != 1 {
		t.Fatalf("unlock --all: %v, %v", removed, err)
	}
	st, err = agent.GC(ctx, l, agent.GCOptions{})
	if err != nil || st.DeadBlobs == 0 {
		t.Fatalf("collection with the bucket to itself: %+v, %v", st, err)
	}
	if got := lockNames(t, l.Repo); len(got) != 0 {
		t.Errorf("locks left behind: %v", got)
	}
}

// appendOnly refuses deletes, like credentials that may only add.
type appendOnly struct{ repo.Store }

func (appendOnly) Delete(context.Context, string) error { return errors.New("access denied") }

// TestBackupWithAppendOnlyCredentials: a backup whose lock cannot be
// deleted still succeeds; the lock is left to go stale.
func TestBackupWithAppendOnlyCredentials(t *testing.T) {
	l := newLocal(t, appendOnly{mem.New()})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("kept"))
	snapshot(t, l, src, nil)
	if got := lockNames(t, l.Repo); len(got) != 1 {
		t.Errorf("locks after the backup: %v, want the one it could not delete", got)
	}
}

// TestLocksOfThisHost: a gc killed on this machine must not block the
// next backup for half an hour, nor must the lock a restarted coordinator
// container left (same host name, same pid 1, its index now held by the
// new process); a lock of a live process here, or of a pid that cannot be
// looked up from here, still does.
func TestLocksOfThisHost(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t, mem.New())
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := os.Readlink("/proc/self/ns/pid")
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		host     string
		pid      int
		pidns    string
		instance string
		locked   bool
	}{
		{"live process", host, os.Getpid(), ns, "another index", true},
		{"process gone", host, gone.Process.Pid, ns, "another index", false},
		{"pid of another namespace", host, gone.Process.Pid, "pid:[1]", "another index", true},
		{"earlier holder of my index", host, os.Getpid(), ns, l.Index.Instance(), false},
		{"earlier holder of my index in another namespace", host, 1, "pid:[1]", l.Index.Instance(), false},
		{"my index on another host", "laptop2", os.Getpid(), ns, l.Index.Instance(), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			name, err := l.Repo.PutLock(ctx, repo.Lock{
				Owner: "a killed gc", Exclusive: true, Op: "gc", Host: c.host, PID: c.pid, PIDNS: c.pidns,
				Instance: c.instance, Time: time.Now().UTC(),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, lk, err := l.Lock(ctx, "backup", false)
			if c.locked != errors.Is(err, agent.ErrLocked) {
				t.Fatalf("backup beside the lock of a %s: %v", c.name, err)
			}
			if lk != nil {
				lk.Unlock(ctx)
			}
			removed, err := agent.RemoveLocks(ctx, l.Repo, l.Index.Instance(), false)
			if err != nil || (len(removed) == 1) == c.locked {
				t.Fatalf("unlock removed %v (%v)", removed, err)
			}
			if c.locked {
				if err := l.Repo.DeleteLock(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
