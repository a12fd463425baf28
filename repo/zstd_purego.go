//go:build !cgo

package repo

import "github.com/klauspost/compress/zstd"

// Compressor names the zstd encoder of this build: without cgo, klauspost's
// Go encoder at SpeedDefault, which aims at level 3's ratio but takes
// longer (see zstd_cgo.go for the figures).
const Compressor = "zstd SpeedDefault, Go (klauspost/compress)"

var zenc, _ = zstd.NewWriter(nil,
	zstd.WithEncoderLevel(zstd.SpeedDefault),
	// Chunks are at most 1 MiB by default, so a 1 MiB window loses
	// nothing on them while each encoder holds ~1/8 of the default's
	// memory (measured: same speed, 18 KB instead of 124 KB allocated
	// per 1 MiB blob and no 8 MiB history per encoder).
	zstd.WithWindowSize(1<<20),
	zstd.WithLowerEncoderMem(true),
	// No xxhash of the content in the frame: AES-GCM authenticates
	// every blob and every read checks the plaintext against its keyed
	// BLAKE3 ID, so the checksum would prove nothing more. It cost 4
	// bytes a blob and 1.5 % of an initial backup's CPU.
	zstd.WithEncoderCRC(false),
	zstd.WithZeroFrames(true))

// zstdAppend appends the zstd frame of src to dst.
func zstdAppend(dst, src []byte) ([]byte, bool) {
	return zenc.EncodeAll(src, dst), true
}
