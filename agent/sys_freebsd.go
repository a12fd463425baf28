package agent

import "golang.org/x/sys/unix"

const openLookupDir = unix.O_SEARCH

// openNoATime: FreeBSD has no such flag.
const openNoATime = 0

func mknodat(dirfd int, name string, mode uint32, dev uint64) error {
	return unix.Mknodat(dirfd, name, mode, dev)
}
