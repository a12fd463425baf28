package repo

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePages asks the kernel to back the 2 MiB-aligned interior of b with
// transparent huge pages where the system allows it on request
// (transparent_hugepage=madvise, the Debian default). It is advice: on
// failure nothing changes.
func hugePages(b []byte) {
	const huge = 2 << 20
	base := uintptrOf(b)
	start := (base + huge - 1) &^ (huge - 1)
	end := (base + uintptr(len(b))) &^ (huge - 1)
	if end <= start {
		return
	}
	off := start - base
	_ = unix.Madvise(b[off:off+(end-start)], unix.MADV_HUGEPAGE)
}

// uintptrOf is the address of b's first element, for alignment sums only.
func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
