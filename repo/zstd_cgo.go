//go:build cgo

package repo

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
// A constructor, not a Go init: by the time package init runs, threads of
// the Go runtime have malloc'ed (cgo's thread start does) and hold arenas
// of their own, which a later limit does not take back.
__attribute__((constructor)) static void oneMallocArena(void) { mallopt(M_ARENA_MAX, 1); }
#endif
*/
import "C"

import (
	"runtime"
	"slices"

	czstd "github.com/DataDog/zstd"
)

// The zstd encoder is the only C code that allocates, a context's tables
// once each. glibc gives every OS thread that calls malloc an arena of its
// own, and cgo calls run on whichever thread the goroutine has: an initial
// backup of go1.24.0 peaked at 92-95 MB instead of 84-87 MB, the same
// tables spread over a handful of arenas. One arena costs a lock taken a
// few times per backup. See oneMallocArena above.

// Compressor names the zstd encoder of this build.
//
// With cgo, blobs are compressed by the C libzstd that github.com/DataDog/zstd
// bundles, at level 3 (the zstd command's default). On go1.24.0's tree, cut
// into 128 KiB pieces, it compressed 1.8× faster than klauspost's encoder at
// SpeedDefault alone, and 3.3× faster with both cores compressing (0.9-1.0
// s against 2.9-3.4 s per 224 MB), to 1 % fewer bytes; an initial backup
// of the tree took a third less CPU. Only compression is C: what the store
// returns is decoded by Go code (see zdec).
const Compressor = "zstd level 3, C libzstd (github.com/DataDog/zstd)"

const zstdLevel = 3

// cctxs keeps compression contexts between blobs: a context allocates
// its tables (about 1 MB at level 3) on first use. One per core is enough
// for the savers; a context that finds the list full is left to its
// finalizer, which frees the C memory.
var cctxs = make(chan czstd.Ctx, runtime.GOMAXPROCS(0)+1)

// zstdAppend appends the zstd frame of src to dst. It fails only when C
// cannot allocate a context's tables; the caller then stores src as is.
func zstdAppend(dst, src []byte) ([]byte, bool) {
	var cx czstd.Ctx
	select {
	case cx = <-cctxs:
	default:
		cx = czstd.NewCtx()
	}
	defer func() {
		select {
		case cctxs <- cx:
		default:
		}
	}()
	// With room for the worst case, the frame is written in place.
	dst = slices.Grow(dst, czstd.CompressBound(len(src)))
	frame, err := cx.CompressLevel(dst[len(dst):], src, zstdLevel)
	if err != nil {
		return dst, false
	}
	return dst[:len(dst)+len(frame)], true
}
