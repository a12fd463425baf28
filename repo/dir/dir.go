// Package dir is a repo.Store in a local directory.
//
// Objects are files named after their object names. A Put writes a temporary
// file beside the target, fsyncs it, renames it into place and fsyncs the
// directory, so a crash leaves either the old state or the whole new object.
package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/repo"
)

// Store keeps objects under a root directory.
type Store struct {
	root string
}

var _ repo.Store = (*Store)(nil)

// New returns a store rooted at root. The directory need not exist yet; Put
// creates what it needs.
func New(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository path %s: %w", root, err)
	}
	return &Store{root: abs}, nil
}

// Location implements repo.Locator.
func (s *Store) Location() string { return s.root }

// Traits: a local disk, where one pack written at a time keeps up.
func (s *Store) Traits() repo.Traits { return repo.Traits{Local: true, Uploaders: 1} }

var _ repo.TraitsProvider = (*Store)(nil)

func (s *Store) path(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("invalid object name %q", name)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

func translate(op, name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: %w", op, name, repo.ErrNotFound)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%s %s: disk full: %w", op, name, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// Put implements repo.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.put(ctx, name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// PutPieces implements repo.PiecesPutter: the pieces go to the file with
// writev, a pack in two or three system calls and no copy.
func (s *Store) PutPieces(ctx context.Context, name string, p repo.Pieces) error {
	return s.put(ctx, name, func(f *os.File) error { return writePieces(f, p) })
}

var _ repo.PiecesPutter = (*Store)(nil)

// put writes a temporary file beside the target with write, fsyncs it,
// renames it into place and fsyncs the directory.
func (s *Store) put(ctx context.Context, name string, write func(*os.File) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return translate("put", name, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return translate("put", name, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return translate("put", name, err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return translate("put", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return translate("put", name, err)
	}
	return syncDir(dir)
}

// iovMax is the most iovecs one writev takes (IOV_MAX on Linux and BSDs).
const iovMax = 1024

// writePieces writes p to f with writev, resuming after short writes.
func writePieces(f *os.File, p repo.Pieces) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	left := append(repo.Pieces(nil), p...) // trimmed as it is written
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for {
			for len(left) > 0 && len(left[0]) == 0 {
				left = left[1:]
			}
			if len(left) == 0 {
				return true
			}
			n, err := writev(int(fd), left[:min(len(left), iovMax)])
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				werr = &os.PathError{Op: "writev", Path: f.Name(), Err: err}
				return true
			}
			for n > 0 {
				k := min(n, len(left[0]))
				left[0] = left[0][k:]
				n -= k
				if len(left[0]) == 0 {
					left = left[1:]
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return werr
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Get implements repo.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	// A bare descriptor: os.Open would try to register it with the
	// poller, four fcntl and an epoll_ctl per read of a tree or blob.
	fd, err := openRead(p)
	if err != nil {
		return nil, translate("get", name, err)
	}
	defer unix.Close(fd)
	if length < 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, translate("get", name, &os.PathError{Op: "stat", Path: p, Err: err})
		}
		length = st.Size - off
		if length < 0 {
			return nil, fmt.Errorf("get %s: offset %d beyond size %d", name, off, st.Size)
		}
	}
	buf := make([]byte, length)
	for n := 0; n < len(buf); {
		k, err := unix.Pread(fd, buf[n:], off+int64(n))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, translate("get", name, &os.PathError{Op: "read", Path: p, Err: err})
		case k == 0:
			return nil, fmt.Errorf("get %s: range %d+%d beyond end of object (read %d)", name, off, length, n)
		}
		n += k
	}
	return buf, nil
}

func openRead(p string) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

// GetReader implements repo.RangeReader.
func (s *Store) GetReader(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, translate("get", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, length), f}, nil
}

var _ repo.RangeReader = (*Store)(nil)

// Stat implements repo.Store.
func (s *Store) Stat(ctx context.Context, name string) (repo.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return repo.ObjectInfo{}, err
	}
	p, err := s.path(name)
	if err != nil {
		return repo.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return repo.ObjectInfo{}, translate("stat", name, err)
	}
	return repo.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements repo.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(repo.ObjectInfo) error) error {
	// Walk from the deepest directory the prefix names, filter the rest.
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		return fn(repo.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("list %s in %s: %w", prefix, s.root, err)
	}
	return nil
}

// Delete implements repo.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return translate("delete", name, err)
	}
	return nil
}
