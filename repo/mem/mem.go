// Package mem is an in-memory repo.Store for unit tests.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

// Store keeps objects in a map. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	objects map[string]object
}

type object struct {
	data    []byte
	modTime time.Time
}

var _ repo.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{objects: map[string]object{}} }

// Location implements repo.Locator.
func (s *Store) Location() string { return "mem:" }

// Put implements repo.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cp := append([]byte(nil), data...)
	s.mu.Lock()
	s.objects[name] = object{data: cp, modTime: time.Now()}
	s.mu.Unlock()
	return nil
}

// Get implements repo.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	o, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, repo.ErrNotFound)
	}
	size := int64(len(o.data))
	if length < 0 {
		length = size - off
	}
	if off < 0 || length < 0 || off+length > size {
		return nil, fmt.Errorf("get %s: range %d+%d beyond size %d", name, off, length, size)
	}
	return append([]byte(nil), o.data[off:off+length]...), nil
}

// GetReader implements repo.RangeReader, so unit tests take the path the
// real stores take.
func (s *Store) GetReader(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	o, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, repo.ErrNotFound)
	}
	end := min(off+length, int64(len(o.data)))
	if off < 0 || off > end {
		return nil, fmt.Errorf("get %s: range %d+%d beyond size %d", name, off, length, len(o.data))
	}
	return io.NopCloser(bytes.NewReader(append([]byte(nil), o.data[off:end]...))), nil
}

var _ repo.RangeReader = (*Store)(nil)

// Stat implements repo.Store.
func (s *Store) Stat(ctx context.Context, name string) (repo.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return repo.ObjectInfo{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return repo.ObjectInfo{}, fmt.Errorf("stat %s: %w", name, repo.ErrNotFound)
	}
	return repo.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List implements repo.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(repo.ObjectInfo) error) error {
	s.mu.RLock()
	var infos []repo.ObjectInfo
	for name, o := range s.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, repo.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	s.mu.RUnlock()
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements repo.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[name]; !ok {
		return fmt.Errorf("delete %s: %w", name, repo.ErrNotFound)
	}
	delete(s.objects, name)
	return nil
}

// Corrupt flips one bit of the named object at offset off, for tests of
// verification paths.
func (s *Store) Corrupt(name string, off int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[name]
	if !ok || off >= len(o.data) {
		return fmt.Errorf("corrupt %s at %d: %w", name, off, repo.ErrNotFound)
	}
	o.data[off] ^= 0x01
	return nil
}
