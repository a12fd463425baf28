package agent

import "time"

// SetOpenFailure makes the backup's opening of a file fail with what fail
// returns for its path, when that is not nil; it returns a restore func.
func SetOpenFailure(fail func(path string) error) func() {
	old := openDescriptor
	openDescriptor = func(path string, flags int) (int, error) {
		if err := fail(path); err != nil {
			return -1, err
		}
		return old(path, flags)
	}
	return func() { openDescriptor = old }
}

// SetLockTiming sets how often locks are refreshed and when they are
// stale; it returns a restore func.
func SetLockTiming(refresh, stale time.Duration) func() {
	oldRefresh, oldStale := lockRefreshEvery, LockStaleAfter
	lockRefreshEvery, LockStaleAfter = refresh, stale
	return func() { lockRefreshEvery, LockStaleAfter = oldRefresh, oldStale }
}
