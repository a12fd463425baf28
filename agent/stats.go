package agent

import (
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/repo"
)

// RepoStats summarises a repository from its index.
type RepoStats struct {
	Snapshots        int     `json:"snapshots"`
	Series           int     `json:"series"` // distinct node/path pairs
	LogicalBytes     uint64  `json:"logical_bytes"`
	UniqueBytes      uint64  `json:"unique_bytes"` // plaintext of all blobs
	StoredBytes      uint64  `json:"stored_bytes"` // bytes of all packs
	Packs            int     `json:"packs"`
	DataBlobs        uint64  `json:"data_blobs"`
	TreeBlobs        uint64  `json:"tree_blobs"`
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
}

// ComputeStats reads the catalog and index.
func ComputeStats(l *Local) (RepoStats, error) {
	var st RepoStats
	sns, err := l.Index.Snapshots()
	if err != nil {
		return st, err
	}
	series := map[string]bool{}
	for _, sn := range sns {
		st.Snapshots++
		st.LogicalBytes += sn.Summary.TotalSize
		series[sn.Node+"\x00"+sn.Path] = true
	}
	st.Series = len(series)
	packs, err := l.Index.Packs()
	if err != nil {
		return st, err
	}
	for _, p := range packs {
		st.StoredBytes += uint64(p.Size)
	}
	st.Packs = len(packs)
	err = l.Index.EachBlob(func(loc index.Location) error {
		st.UniqueBytes += uint64(loc.Entry.RawLength)
		if loc.Entry.Type == repo.DataBlob {
			st.DataBlobs++
		} else {
			st.TreeBlobs++
		}
		return nil
	})
	if st.StoredBytes > 0 {
		st.DedupRatio = float64(st.LogicalBytes) / float64(st.StoredBytes)
		st.CompressionRatio = float64(st.UniqueBytes) / float64(st.StoredBytes)
	}
	return st, err
}
