package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The collector's target depends on how much the heap holds. Most of a
// large heap (an initial backup's) is buffers without pointers, cheap to
// collect, so a tight target costs little and saves memory: peak RSS of an
// initial backup of a 257 MB tree went 245 → 195 MB at GOGC 50 and 122-125
// → 108-110 MB at 35; lower starts to cost time where trees dominate (a
// no-change backup of 200,000 small files: 0.97 s at 50 and 35, 1.12 s at
// 25). A small heap is the other way round: at 35 the collector runs
// whenever 1.4 MB of garbage piles up, 18 times in a no-change backup of
// go1.24.0 (8 at 100), for memory that never reaches the argon2
// derivation's peak anyway. So the target is Go's 100 while the live heap
// is under smallHeap and 35 above it: that no-change backup took 10 % less
// wall and CPU time, the initial backup peaked where it did.
const (
	gcPercentSmall = 100
	gcPercentLarge = 35
	// smallHeap sits between a no-change backup's live heap on go1.24.0
	// (7-8 MB) and an initial backup's (18-22 MB).
	smallHeap = 12 << 20
)

// tuneGC sets the collector's target after every collection from the live
// heap it found. It is called once; a finalizer carries it from cycle to
// cycle, since the runtime has no other hook at the end of a collection.
func tuneGC() {
	percent := gcPercentSmall
	debug.SetGCPercent(percent)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		// A pointer field keeps the sentinel out of the tiny allocator,
		// whose shared blocks would delay its finalizer.
		sentinel := &struct{ _ *byte }{}
		runtime.SetFinalizer(sentinel, func(*struct{ _ *byte }) {
			metrics.Read(live)
			want := gcPercentLarge
			if live[0].Value.Kind() == metrics.KindUint64 && live[0].Value.Uint64() < smallHeap {
				want = gcPercentSmall
			}
			if want != percent {
				percent = want
				debug.SetGCPercent(percent)
			}
			arm()
		})
	}
	arm()
}
