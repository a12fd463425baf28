package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/repo"
)

// ErrInjected is the error Faulty returns for an injected failure.
var ErrInjected = errors.New("injected fault")

// Faulty wraps a store and fails chosen operations.
type Faulty struct {
	repo.Store
	mu sync.Mutex
	// FailPut, if set, is asked before each Put; returning true fails it.
	FailPut func(name string, n int) bool
	puts    int
}

var _ repo.Store = (*Faulty)(nil)

// Location implements repo.Locator.
func (f *Faulty) Location() string { return repo.Location(f.Store) }

// Put implements repo.Store.
func (f *Faulty) Put(ctx context.Context, name string, data []byte) error {
	f.mu.Lock()
	f.puts++
	n := f.puts
	fail := f.FailPut != nil && f.FailPut(name, n)
	f.mu.Unlock()
	if fail {
		return ErrInjected
	}
	return f.Store.Put(ctx, name, data)
}

// SetFailPut replaces FailPut while the store is in use.
func (f *Faulty) SetFailPut(fail func(name string, n int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.FailPut = fail
}

// FailNthPutWithPrefix returns a FailPut that fails the n-th Put (counting
// from 1) of a name with prefix.
func FailNthPutWithPrefix(prefix string, n int) func(string, int) bool {
	seen := 0
	return func(name string, _ int) bool {
		if !strings.HasPrefix(name, prefix) {
			return false
		}
		seen++
		return seen == n
	}
}
