package repo

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// fakePacks returns packs with the given blob counts; their entries are
// valid for an index but no pack object exists.
func fakePacks(counts ...int) []PackInfo {
	packs := make([]PackInfo, len(counts))
	for i, n := range counts {
		p := PackInfo{Size: int64(n) * 64}
		p.ID[0], p.ID[1] = byte(i), byte(i>>8)
		for j := range n {
			e := BlobEntry{Type: DataBlob, Offset: uint32(j * 64), Length: 64, RawLength: 10}
			e.ID[0], e.ID[1], e.ID[2], e.ID[3] = byte(i), byte(j), byte(j>>8), byte(j>>16)
			p.Blobs = append(p.Blobs, e)
		}
		packs[i] = p
	}
	return packs
}

func TestGroupPacks(t *testing.T) {
	for _, c := range []struct {
		counts []int
		max    int
		want   []int // packs per group
	}{
		{nil, 10, nil},
		{[]int{3}, 10, []int{1}},
		{[]int{3, 3, 3}, 10, []int{3}},
		{[]int{3, 3, 3, 3}, 10, []int{3, 1}},
		{[]int{5, 5, 5}, 10, []int{2, 1}},
		{[]int{25}, 10, []int{1}},             // one pack over the limit: alone
		{[]int{2, 25, 2}, 10, []int{1, 1, 1}}, // and its neighbours apart
		{[]int{0, 0, 10, 0}, 10, []int{4}},
	} {
		t.Run(fmt.Sprint(c.counts, c.max), func(t *testing.T) {
			packs := fakePacks(c.counts...)
			groups := groupPacks(packs, c.max)
			var got []int
			i := 0
			for _, g := range groups {
				got = append(got, len(g))
				for _, p := range g {
					if p.ID != packs[i].ID {
						t.Fatalf("pack %d out of order or missing", i)
					}
					i++
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) || i != len(packs) {
				t.Fatalf("groups of %v packs covering %d, want %v covering %d", got, i, c.want, len(packs))
			}
		})
	}
}

// A session with more blobs than one index object takes is written as
// several objects that together describe every pack once.
func TestWriteIndexesSplits(t *testing.T) {
	ctx := context.Background()
	r := testRepository(t)
	packs := fakePacks(40000, 20000, 30000, 30000, 80000)
	objs, err := r.WriteIndexes(ctx, packs)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("%d index objects, want 3 (40k+20k | 30k+30k | 80k alone)", len(objs))
	}
	checkIndexObjects(t, r, objs, packs)
}

// checkIndexObjects checks that objs, read back from the store, describe
// every one of packs exactly once, entry for entry, and no other pack.
func checkIndexObjects(t *testing.T, r *Repository, objs []IndexObject, packs []PackInfo) {
	t.Helper()
	want := map[PackID]PackInfo{}
	for _, p := range packs {
		want[p.ID] = p
	}
	for _, o := range objs {
		back, err := r.ReadIndex(context.Background(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(o.Packs) {
			t.Fatalf("%s holds %d packs, the session says %d", o.Name, len(back), len(o.Packs))
		}
		for i, p := range back {
			w, ok := want[p.ID]
			if !ok || p.ID != o.Packs[i] || !slices.Equal(p.Blobs, w.Blobs) {
				t.Fatalf("%s pack %d (%s) is not one written, or described twice", o.Name, i, p.ID.Short())
			}
			delete(want, p.ID)
		}
	}
	if len(want) != 0 {
		t.Errorf("%d packs described by no index object", len(want))
	}
}
