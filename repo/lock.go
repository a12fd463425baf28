package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Lock is the plaintext of a lock object: who is using the repository,
// for what, and since when. Processes that share a bucket but no
// coordinator (embedded mode on several machines) learn of each other
// only through these.
type Lock struct {
	// Owner is random per process: locks of one owner never conflict,
	// since one process guards its own concurrent work by its catalog.
	Owner     string `json:"owner"`
	Exclusive bool   `json:"exclusive"`
	Op        string `json:"op"`
	Host      string `json:"host,omitempty"`
	User      string `json:"user,omitempty"`
	PID       int    `json:"pid,omitempty"`
	// PIDNS names the pid namespace PID belongs to (on Linux; each
	// container has its own), so a pid is looked up only where it means
	// the same process.
	PIDNS string `json:"pidns,omitempty"`
	// Instance names the local index the process held open while it held
	// the lock. One process at a time can hold an index, so a lock of
	// this host and instance but another owner is a dead process's.
	Instance string    `json:"instance,omitempty"`
	Time     time.Time `json:"time"` // written, or last refreshed
}

// LockObject is a lock as found in the store.
type LockObject struct {
	Name string
	Lock
}

const lockPrefix = "locks/"

// maxLockSize caps a lock object before it is decrypted.
const maxLockSize = 64 << 10

// PutLock writes l as a new lock object and returns its name. Locks are
// never rewritten: a refresh writes a new object and deletes the old.
func (r *Repository) PutLock(ctx context.Context, l Lock) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := lockPrefix + hex.EncodeToString(b[:])
	plain, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	if err := r.store.Put(ctx, name, r.sealer.seal(nil, plain, []byte(name))); err != nil {
		return "", fmt.Errorf("write lock %s: %w", name, err)
	}
	return name, nil
}

// Locks returns every lock object in the store. One that vanishes between
// the listing and the read was released meanwhile and is left out; one that
// does not open is an error, since it may be a lock of a process this one
// cannot see.
func (r *Repository) Locks(ctx context.Context) ([]LockObject, error) {
	var names []string
	err := r.store.List(ctx, lockPrefix, func(oi ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var locks []LockObject
	for _, name := range names {
		if _, err := hex.DecodeString(strings.TrimPrefix(name, lockPrefix)); err != nil {
			return nil, fmt.Errorf("lock %s: not a lock name: %w", name, ErrCorrupt)
		}
		sealed, err := r.store.Get(ctx, name, 0, -1)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read lock %s: %w", name, err)
		}
		if len(sealed) > maxLockSize {
			return nil, fmt.Errorf("lock %s of %d bytes: %w", name, len(sealed), ErrCorrupt)
		}
		plain, err := r.sealer.open(nil, sealed, []byte(name))
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		var l Lock
		if err := json.Unmarshal(plain, &l); err != nil {
			return nil, fmt.Errorf("lock %s: %v: %w", name, err, ErrCorrupt)
		}
		locks = append(locks, LockObject{Name: name, Lock: l})
	}
	return locks, nil
}

// DeleteLock removes a lock object; one already gone is not an error.
func (r *Repository) DeleteLock(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, lockPrefix) {
		return fmt.Errorf("%s is not a lock object", name)
	}
	if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete lock %s: %w", name, err)
	}
	return nil
}
