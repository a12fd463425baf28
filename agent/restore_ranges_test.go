package agent

import (
	"testing"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/dir"
	"github.com/cairn-backup/cairn/repo/mem"
)

func TestRangeRequests(t *testing.T) {
	const kib, mib = 1 << 10, 1 << 20
	// blobs lays out blobs of the given sizes, each after the given gap.
	blobs := func(gapsAndSizes ...uint32) []blobUse {
		var uses []blobUse
		var off uint32
		for i := 0; i < len(gapsAndSizes); i += 2 {
			off += gapsAndSizes[i]
			uses = append(uses, blobUse{entry: repo.BlobEntry{Offset: off, Length: gapsAndSizes[i+1]}})
			off += gapsAndSizes[i+1]
		}
		return uses
	}
	tests := []struct {
		name   string
		uses   []blobUse
		maxGap int64
		want   int // range requests
	}{
		{"one blob", blobs(0, kib), localRangeGap, 1},
		{"adjacent", blobs(0, mib, 0, mib, 0, mib), localRangeGap, 1},
		{"small gaps, local", blobs(0, kib, 100*kib, kib, 512*kib, kib), localRangeGap, 1},
		{"1 MiB gaps, local", blobs(0, kib, mib, kib, mib, kib), localRangeGap, 3},
		{"1 MiB gaps, remote", blobs(0, kib, mib, kib, mib, kib), remoteRangeGap, 1},
		{"5 MiB gap, remote", blobs(0, kib, 5*mib, kib), remoteRangeGap, 2},
		{"over the range size", blobs(0, 8*mib, 0, 8*mib, 0, 8*mib, 0, 8*mib, 0, kib), remoteRangeGap, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			for start := 0; start < len(tt.uses); start = rangeEnd(tt.uses, start, tt.maxGap) {
				n++
			}
			if n != tt.want {
				t.Errorf("%d range requests, want %d", n, tt.want)
			}
		})
	}
}

func TestRangeGapFollowsTheStore(t *testing.T) {
	d, err := dir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if g := rangeGap(d); g != localRangeGap {
		t.Errorf("local folder: gap %d, want %d", g, localRangeGap)
	}
	if g := rangeGap(mem.New()); g != remoteRangeGap {
		t.Errorf("store without traits (as S3): gap %d, want %d", g, remoteRangeGap)
	}
}
