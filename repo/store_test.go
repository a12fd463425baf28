package repo_test

import (
	"testing"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/dir"
	"github.com/cairn-backup/cairn/repo/mem"
	"github.com/cairn-backup/cairn/repo/storetest"
)

func TestStoreConformance(t *testing.T) {
	stores := []struct {
		name string
		new  func(t *testing.T) repo.Store
	}{
		{"mem", func(t *testing.T) repo.Store { return mem.New() }},
		{"dir", func(t *testing.T) repo.Store {
			s, err := dir.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"s3", func(t *testing.T) repo.Store { return storetest.NewMinIOStore(t) }},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { storetest.Suite(t, s.new) })
	}
}
