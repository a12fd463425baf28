package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const openLookupDir = unix.O_SEARCH

// openNoATime: macOS has no such flag.
const openNoATime = 0

// mknodat: golang.org/x/sys has no mknodat for macOS, and making the node
// by its full path could follow a symlink planted in the target on the
// way; the entry is reported instead.
func mknodat(int, string, uint32, uint64) error {
	return fmt.Errorf("restoring fifos and device nodes is not supported on macOS")
}
