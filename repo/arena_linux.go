//go:build linux && !race

package repo

import (
	"golang.org/x/sys/unix"
)

// Data arenas are mapped apart from the Go heap. On the heap, the two or
// three 16 MiB arenas of a backup count as live data, and the collector
// lets the heap grow GOGC percent past them before it runs: an initial
// backup of go1.24.0 peaked at 98-104 MB RSS with heap arenas and at
// 88-91 MB with mapped ones. Mapped arenas also take huge pages, 8 page
// faults per arena instead of 4,096. (The race detector cannot see memory
// outside the Go heap, so race builds use heap arenas: arena_other.go.)
const arenasMapped = true

const hugePageSize = 2 << 20

func mapArena(n int) []byte {
	b, err := unix.Mmap(-1, 0, n+hugePageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		// Out of address space or a mapping limit: the heap may still
		// have room, and an arena there only costs its collection slack.
		return make([]byte, 0, n)
	}
	// Start on a huge-page boundary so the whole arena can use them; the
	// slack before it is never touched and costs no memory.
	off := 0
	if r := uintptrOf(b) % hugePageSize; r != 0 {
		off = int(hugePageSize - r)
	}
	a := b[off : off+n : off+n]
	hugePages(a)
	return a[:0]
}

// releaseArena gives an arena's memory back to the system; the next
// writes to it fault fresh zero pages in.
func releaseArena(a []byte) {
	if cap(a) > 0 {
		_ = unix.Madvise(a[:cap(a)], unix.MADV_DONTNEED)
	}
}
