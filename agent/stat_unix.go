package agent

import (
	"io/fs"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/repo"
)

// nodeFromInfo fills a node from lstat information.
func nodeFromInfo(name string, fi fs.FileInfo, names *ownerNames) (repo.Node, bool) {
	n := repo.Node{Name: name, Mode: uint32(fi.Mode().Perm())}
	m := fi.Mode()
	if m&fs.ModeSetuid != 0 {
		n.Mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n.Mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n.Mode |= 0o1000
	}
	switch {
	case m.IsRegular():
		n.Type = repo.NodeFile
		n.Size = uint64(fi.Size())
	case m.IsDir():
		n.Type = repo.NodeDir
	case m&fs.ModeSymlink != 0:
		n.Type = repo.NodeSymlink
	case m&fs.ModeNamedPipe != 0:
		n.Type = repo.NodeFifo
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		n.Type = repo.NodeCharDev
	case m&fs.ModeDevice != 0:
		n.Type = repo.NodeBlockDev
	default:
		return n, false // sockets and the unknown: tar skips them too
	}
	n.ModTime = fi.ModTime().UnixNano()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
		n.Inode = st.Ino
		n.Device = uint64(st.Dev)
		n.Links = uint64(st.Nlink)
		n.ChangeTime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
		n.Rdev = uint64(st.Rdev)
		n.User = names.user(st.Uid)
		n.Group = names.group(st.Gid)
	}
	return n, true
}

// ownerNames caches uid and gid lookups; the user database is read once per
// id, not once per file.
type ownerNames struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func newOwnerNames() *ownerNames {
	return &ownerNames{users: map[uint32]string{}, groups: map[uint32]string{}}
}

func (o *ownerNames) user(uid uint32) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.users[uid]; ok {
		return s
	}
	s := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		s = u.Username
	}
	o.users[uid] = s
	return s
}

func (o *ownerNames) group(gid uint32) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.groups[gid]; ok {
		return s
	}
	s := ""
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		s = g.Name
	}
	o.groups[gid] = s
	return s
}
