package agent

import "golang.org/x/sys/unix"

// openLookupDir opens a folder only to look its entries up, which needs
// search but not read permission on it.
const openLookupDir = unix.O_PATH

// openNoATime keeps reads from updating access times.
const openNoATime = unix.O_NOATIME

func mknodat(dirfd int, name string, mode uint32, dev uint64) error {
	return unix.Mknodat(dirfd, name, mode, int(dev))
}
