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
// 324,000 openat and close calls to restore 10,734 files. A directory is
// opened through the os.Root once (so never outside the target), and the
// final component is never followed. Not safe for concurrent use: each
// goroutine has its own.
type dirCache struct {
	root *os.Root
	dirs map[string]*os.File
}

// maxCachedDirs bounds open descriptors per cache.
const maxCachedDirs = 128

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, dirs: map[string]*os.File{}}
}

// parent returns an open descriptor of rel's parent directory and rel's
// last component.
func (c *dirCache) parent(rel string) (int, string, error) {
	dir, name := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	f := c.dirs[dir]
	if f == nil {
		if len(c.dirs) >= maxCachedDirs {
			for k, g := range c.dirs {
				g.Close()
				delete(c.dirs, k)
				break
			}
		}
		var err error
		if f, err = c.root.Open(dir); err != nil {
			return -1, "", err
		}
		c.dirs[dir] = f
	}
	return int(f.Fd()), name, nil
}

// forget closes cached directories at or under rel, before it is removed.
func (c *dirCache) forget(rel string) {
	for k, f := range c.dirs {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			f.Close()
			delete(c.dirs, k)
		}
	}
}

func (c *dirCache) close() {
	for k, f := range c.dirs {
		f.Close()
		delete(c.dirs, k)
	}
}

// open opens rel with flags, never following a symlink at rel.
func (c *dirCache) open(rel string, flags int, mode uint32) (*os.File, error) {
	dfd, name, err := c.parent(rel)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(dfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
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
func (c *dirCache) setMeta(rel string, dir bool, owner bool, uid, gid int, mode os.FileMode, mtimeNs int64) []error {
	flags := unix.O_RDONLY
	if dir {
		flags |= unix.O_DIRECTORY
	}
	f, err := c.open(rel, flags, 0)
	if err != nil {
		return []error{fmt.Errorf("set metadata: %w", err)}
	}
	defer f.Close()
	var errs []error
	if owner {
		if err := f.Chown(uid, gid); err != nil {
			errs = append(errs, fmt.Errorf("set owner: %w", err))
		}
	}
	if err := f.Chmod(mode); err != nil {
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
