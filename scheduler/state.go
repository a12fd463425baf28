package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// PathSpec is one path to back up on a node.
type PathSpec struct {
	Path  string   `json:"path"`
	Every Duration `json:"every"`
	Keep  int      `json:"keep,omitempty"` // 0: the coordinator's default
}

// Node is a registered agent.
type Node struct {
	Name      string     `json:"name"`
	Addr      string     `json:"addr"`
	Token     string     `json:"token"`
	Paths     []PathSpec `json:"paths"`
	Down      bool       `json:"down"`
	LastSeen  time.Time  `json:"last_seen"`
	DownSince time.Time  `json:"down_since,omitempty"`
}

// PathState is the schedule state of one node and path.
type PathState struct {
	NextRun      time.Time `json:"next_run"`
	LastRun      time.Time `json:"last_run,omitempty"`
	LastSuccess  time.Time `json:"last_success,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Failures     int       `json:"failures,omitempty"`
	LastSnapshot string    `json:"last_snapshot,omitempty"`
}

// Duration is a time.Duration that reads and writes as "1h30m" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// stateDB is the coordinator's own Badger: nodes and path states. The
// chunk index and catalog live in the repository's index (package index).
type stateDB struct {
	db *badger.DB
}

func openStateDB(dir string) (*stateDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).
		WithMemTableSize(8 << 20).WithBlockCacheSize(8 << 20).WithNumVersionsToKeep(1).
		WithValueLogFileSize(16 << 20).WithSyncWrites(true))
	if err != nil {
		return nil, fmt.Errorf("coordinator state %s: %w", dir, err)
	}
	return &stateDB{db: db}, nil
}

func (s *stateDB) close() error { return s.db.Close() }

func nodeKey(name string) []byte       { return []byte("n/" + name) }
func pathKey(node, path string) []byte { return []byte("p/" + node + "\x00" + path) }
func pathPrefix(node string) []byte    { return []byte("p/" + node + "\x00") }
func (s *stateDB) putJSON(k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(k, b) })
}

func (s *stateDB) getJSON(k []byte, v any) (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return it.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	})
	return found, err
}

func (s *stateDB) nodes() ([]*Node, error) {
	var out []*Node
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("n/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var n Node
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &n) }); err != nil {
				return err
			}
			out = append(out, &n)
		}
		return nil
	})
	return out, err
}

func (s *stateDB) deleteNode(name string) error {
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(nodeKey(name)) }); err != nil {
		return err
	}
	return s.db.DropPrefix(pathPrefix(name))
}

func (s *stateDB) deletePath(node, path string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(pathKey(node, path)) })
}
