package storetest

import (
	"context"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/repo"
)

// Op is one recorded store operation.
type Op struct {
	Kind string // put, get, stat, list, delete
	Name string
	Size int64
}

// Recorder wraps a store and records every operation.
type Recorder struct {
	repo.Store
	mu  sync.Mutex
	ops []Op
}

var _ repo.Store = (*Recorder)(nil)

// NewRecorder wraps s.
func NewRecorder(s repo.Store) *Recorder { return &Recorder{Store: s} }

func (r *Recorder) record(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Location implements repo.Locator.
func (r *Recorder) Location() string { return repo.Location(r.Store) }

// Put implements repo.Store.
func (r *Recorder) Put(ctx context.Context, name string, data []byte) error {
	r.record(Op{"put", name, int64(len(data))})
	return r.Store.Put(ctx, name, data)
}

// Get implements repo.Store.
func (r *Recorder) Get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	b, err := r.Store.Get(ctx, name, off, n)
	r.record(Op{"get", name, int64(len(b))})
	return b, err
}

// Stat implements repo.Store.
func (r *Recorder) Stat(ctx context.Context, name string) (repo.ObjectInfo, error) {
	r.record(Op{"stat", name, 0})
	return r.Store.Stat(ctx, name)
}

// List implements repo.Store.
func (r *Recorder) List(ctx context.Context, prefix string, fn func(repo.ObjectInfo) error) error {
	r.record(Op{"list", prefix, 0})
	return r.Store.List(ctx, prefix, fn)
}

// Delete implements repo.Store.
func (r *Recorder) Delete(ctx context.Context, name string) error {
	r.record(Op{"delete", name, 0})
	return r.Store.Delete(ctx, name)
}

// Reset forgets the recorded operations.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.ops = nil
	r.mu.Unlock()
}

// Count returns how many operations of kind touched names with prefix.
func (r *Recorder) Count(kind, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, op := range r.ops {
		if op.Kind == kind && strings.HasPrefix(op.Name, prefix) {
			n++
		}
	}
	return n
}
