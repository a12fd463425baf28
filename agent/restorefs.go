package agent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// dirCache keeps directories of the restore target open, so that entries
// are created and changed with *at system calls relative to their parent.
// os.Root walks every path component on every call, which measured as
// 324,000 openat and close calls to restore 10,734 files. Only the target
// itself is opened through the os.Root; every directory below is opened
// relative to its cached parent, one component at a time, never following
// a symlink (O_NOFOLLOW), so nothing outside the target is reached. Raw
// descriptors, not *os.File: os.NewFile costs an fcntl per file, and
// os.Open a few more and a failed epoll registration. Not safe for
// concurrent use: each goroutine has its own.
type dirCache struct {
	root    *os.Root
	rootDir *os.File // the target, opened through root
	dirs    map[string]int
}

// maxCachedDirs bounds open descriptors per cache.
const maxCachedDirs = 512

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, dirs: map[string]int{}}
}

// dirFD returns an open descriptor of the directory at rel ("." is the
// target). It stays valid until the next call on the cache.
func (c *dirCache) dirFD(rel string) (int, error) {
	if fd, ok := c.dirs[rel]; ok {
		return fd, nil
	}
	var fd int
	if rel == "." {
		if c.rootDir == nil {
			f, err := c.root.Open(".")
			if err != nil {
				return -1, err
			}
			c.rootDir = f
		}
		return int(c.rootDir.Fd()), nil
	}
	dir, name := splitRel(rel)
	pfd, err := c.dirFD(dir)
	if err != nil {
		return -1, err
	}
	fd, err = unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	if len(c.dirs) >= maxCachedDirs {
		for k, g := range c.dirs {
			unix.Close(g)
			delete(c.dirs, k)
			break
		}
	}
	c.dirs[rel] = fd
	return fd, nil
}

// splitRel splits rel into its parent directory ("." at the top) and its
// last component.
func splitRel(rel string) (dir, name string) {
	dir, name = path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, name
}

// parent returns an open descriptor of rel's parent directory and rel's
// last component; the descriptor is valid until the next call on c.
func (c *dirCache) parent(rel string) (int, string, error) {
	dir, name := splitRel(rel)
	fd, err := c.dirFD(dir)
	return fd, name, err
}

// forget closes cached directories at or under rel, before it is removed.
func (c *dirCache) forget(rel string) {
	for k, fd := range c.dirs {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			unix.Close(fd)
			delete(c.dirs, k)
		}
	}
}

func (c *dirCache) close() {
	for k, fd := range c.dirs {
		unix.Close(fd)
		delete(c.dirs, k)
	}
	if c.rootDir != nil {
		c.rootDir.Close()
		c.rootDir = nil
	}
}

// open opens rel with flags, never following a symlink at rel, and returns
// the descriptor, which the caller closes.
func (c *dirCache) open(rel string, flags int, mode uint32) (int, error) {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(dfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return fd, nil
}

// lstat reports what is at rel without following it; exists is false when
// nothing is.
func (c *dirCache) lstat(rel string) (st unix.Stat_t, exists bool, err error) {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return st, false, err
	}
	err = unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, &os.PathError{Op: "lstat", Path: rel, Err: err}
	}
	return st, true, nil
}

func (c *dirCache) unlink(rel string) error {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dfd, name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: rel, Err: err}
	}
	return nil
}

func (c *dirCache) mkdir(rel string, mode uint32) error {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(dfd, name, mode); err != nil {
		return &os.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	return nil
}

// setMeta sets owner (when owner is set), mode and times of the file or
// directory at rel through a descriptor opened without following rel.
func (c *dirCache) setMeta(rel string, dir bool, owner bool, uid, gid int, mode uint32, mtimeNs int64) []error {
	flags := unix.O_RDONLY
	if dir {
		flags |= unix.O_DIRECTORY
	}
	fd, err := c.open(rel, flags, 0)
	if err != nil {
		return []error{fmt.Errorf("set metadata: %w", err)}
	}
	defer unix.Close(fd)
	return c.setMetaFD(fd, rel, owner, uid, gid, mode, mtimeNs)
}

// setMetaFD is setMeta through fd, an open descriptor of rel. The owner
// goes first: changing it clears set-user-ID and set-group-ID bits.
func (c *dirCache) setMetaFD(fd int, rel string, owner bool, uid, gid int, mode uint32, mtimeNs int64) []error {
	var errs []error
	if owner {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			errs = append(errs, fmt.Errorf("set owner: %w", err))
		}
	}
	if err := unix.Fchmod(fd, mode&0o7777); err != nil {
		errs = append(errs, fmt.Errorf("set mode: %w", err))
	}
	if err := c.setTimes(rel, mtimeNs); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// setTimes sets the access and modification times of rel, not following
// it (so it serves symlinks too).
func (c *dirCache) setTimes(rel string, mtimeNs int64) error {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtimeNs), unix.NsecToTimespec(mtimeNs)}
	if err := unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// lchown sets the owner of rel without following it.
func (c *dirCache) lchown(rel string, uid, gid int) error {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return err
	}
	if err := unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	return nil
}
