package agent

import (
	"os/user"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/repo"
)

// nodeFromStat fills a node from what lstat says of the entry name.
func nodeFromStat(name string, st *unix.Stat_t, names *ownerNames) (repo.Node, bool) {
	mode := uint32(st.Mode) // uint16 on the BSDs
	n := repo.Node{Name: name, Mode: mode & 0o7777}
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Type = repo.NodeFile
		n.Size = uint64(st.Size)
	case unix.S_IFDIR:
		n.Type = repo.NodeDir
	case unix.S_IFLNK:
		n.Type = repo.NodeSymlink
	case unix.S_IFIFO:
		n.Type = repo.NodeFifo
	case unix.S_IFCHR:
		n.Type = repo.NodeCharDev
	case unix.S_IFBLK:
		n.Type = repo.NodeBlockDev
	default:
		return n, false // sockets and the unknown: tar skips them too
	}
	n.ModTime = st.Mtim.Sec*1e9 + st.Mtim.Nsec
	n.UID, n.GID = st.Uid, st.Gid
	n.Inode = st.Ino
	n.Device = uint64(st.Dev)
	n.Links = uint64(st.Nlink)
	n.ChangeTime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	n.Rdev = uint64(st.Rdev)
	n.User = names.user(st.Uid)
	n.Group = names.group(st.Gid)
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
